"""Prometheus metrics through ``prometheus_client``, in its multiprocess mode.

Every process of a group (``buildhook web``'s gunicorn workers, ``buildhook worker``'s Celery pool
and its relay) writes its counters and histograms to files in the group's directory
(``PROMETHEUS_MULTIPROC_DIR``, set by ``buildhook.metrics_dir`` before this module is imported);
``GET /metrics`` merges the files of every group sharing the data directory. The queue depth is
read from the database at scrape time (``QueueDepth``), so every scrape sees the same number.

Builds are counted by ``measured``: a wrapper around the pipeline's and the reaper's state listener
that observes the queue wait when a build starts (its first attempt) and counts the final state with
the phase durations when it ends (the phase it ended in lasts until ``finished_at``). A queued build
cancelled from the web app never reaches a worker: ``count_build_end`` counts it there.

A counter series exists only once its labels were used, so every series whose labels are known is made
at 0 before anything is counted (``prometheus_client``'s ``.labels()`` without ``inc``), or
``increase()`` and ``rate()`` would miss its first count: at import (this process's start) those of fixed
labels (``create_fixed_series``), at each scrape those of the triggers and deploy environments in the
database (``create_configured_series``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from builder.db.models import Build, BuildState, DeployRule, Trigger
from builder.forges.registry import provider_names
from builder.intake.inbound import OUTCOMES as WEBHOOK_OUTCOMES

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

BUILDS = Counter("buildhook_builds_total", "Builds that ended, by final state and trigger id.", ["state", "trigger"])
BUILD_DURATION = Histogram("buildhook_build_duration_seconds",
                           "How long each phase of a build's last attempt took (clone, build, push, total).",
                           ["phase"], buckets=DURATION_BUCKETS)
QUEUE_WAIT = Histogram("buildhook_queue_wait_seconds", "Seconds from a build's creation to its first start.",
                       buckets=WAIT_BUCKETS)
WEBHOOK_DELIVERIES = Counter("buildhook_webhook_deliveries_total", "Inbound webhooks, by provider and outcome.",
                             ["provider", "outcome"])
DEPLOYMENTS = Counter("buildhook_deployments_total", "Deployments that ended, by environment and state.",
                      ["environment", "state"])
OUTBOUND_DELIVERIES = Counter("buildhook_outbound_deliveries_total",
                              "Outbound webhook attempts: succeeded, retry (another attempt is scheduled), failed.",
                              ["outcome"])

StateListener = Callable[[int, str], None]
BUILD_END_STATES = tuple(state.value for state in BuildState if state.finished)
DEPLOYMENT_END_STATES = ("succeeded", "failed")  # builder.deploys.deployments.finish
OUTBOUND_OUTCOMES = ("succeeded", "retry", "failed")
# A build attempt's phases in order, each by the column of its start; "total" spans them all.
PHASE_STARTS = (("clone", "cloning_at"), ("build", "building_at"), ("push", "pushing_at"))
PHASES = (*(phase for phase, _ in PHASE_STARTS), "total")


def measured(on_state: StateListener, sessions: sessionmaker[Session]) -> StateListener:
    """``on_state`` that also records the build's metrics; a metric never fails a build."""
    def listener(build_id: int, state: str) -> None:
        if state == "running" or state in BUILD_END_STATES:
            try:
                with sessions() as session:
                    build = session.get(Build, build_id)
                    if build is not None:
                        _observe(build, state)
            except Exception:  # the database hiccuped: one sample less, never a failed build
                pass
        on_state(build_id, state)
    return listener


def _observe(build: Build, state: str) -> None:
    if state == "running":
        if build.attempts == 1 and build.started_at is not None:
            QUEUE_WAIT.observe(_seconds(build.created_at, build.started_at))
        return
    count_build_end(state, build.trigger_id)
    for phase, seconds in phase_durations(build):
        BUILD_DURATION.labels(phase=phase).observe(seconds)


def phase_durations(build: Build) -> list[tuple[str, float]]:
    """The phases of a finished build's last attempt, in seconds: each lasts until the next began, the one
    it ended in (whatever the ending) until ``finished_at``. A retry leaves the earlier attempt's later
    starts behind: those before this attempt's ``cloning_at`` are not its."""
    began, ended = build.cloning_at, build.finished_at
    if began is None or ended is None:
        return []
    reached: list[tuple[str, datetime]] = []
    for phase, column in PHASE_STARTS:
        at = getattr(build, column)
        if at is None or at < (reached[-1][1] if reached else began):
            break
        reached.append((phase, at))
    spans = [(phase, start, reached[index + 1][1] if index + 1 < len(reached) else ended)
             for index, (phase, start) in enumerate(reached)] + [("total", began, ended)]
    return [(phase, _seconds(start, end)) for phase, start, end in spans if end >= start]


def count_build_end(state: str, trigger_id: int | None, builds: int = 1) -> None:
    """``builds`` builds that ended in ``state`` (``buildhook_builds_total``); a metric never fails what it
    counts (the request or task goes on)."""
    if builds <= 0:
        return
    try:
        BUILDS.labels(state=state, trigger=_trigger_label(trigger_id)).inc(builds)
    except Exception:
        log.exception("could not count %d %s build(s)", builds, state)


def _trigger_label(trigger_id: int | None) -> str:
    return str(trigger_id) if trigger_id else "none"


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


def count_outbound(state: str | None) -> None:
    """One outbound attempt's outcome (``send_delivery``'s answer; None: nothing was due)."""
    if state is not None:
        OUTBOUND_DELIVERIES.labels(outcome="retry" if state == "pending" else state).inc()


def create_fixed_series() -> None:
    """At 0, every series whose labels are known before anything happens: each provider's webhook
    outcomes, the outbound outcomes and the build phases."""
    for provider in provider_names():
        for outcome in WEBHOOK_OUTCOMES:
            WEBHOOK_DELIVERIES.labels(provider=provider, outcome=outcome)
    for outcome in OUTBOUND_OUTCOMES:
        OUTBOUND_DELIVERIES.labels(outcome=outcome)
    for phase in PHASES:
        BUILD_DURATION.labels(phase=phase)


def create_configured_series(sessions: sessionmaker[Session]) -> None:
    """At 0, each trigger's ``buildhook_builds_total`` for every final state and each deploy rule's
    environment's ``buildhook_deployments_total`` for both endings (one query each, at every scrape: a
    trigger made since the last scrape shows 0 before its first build ends). Existing series keep their count."""
    with sessions() as session:
        trigger_ids = session.scalars(select(Trigger.id)).all()
        environments = session.scalars(select(DeployRule.environment).distinct()).all()
    for trigger_id in trigger_ids:
        for state in BUILD_END_STATES:
            BUILDS.labels(state=state, trigger=_trigger_label(trigger_id))
    for environment in environments:
        for state in DEPLOYMENT_END_STATES:
            DEPLOYMENTS.labels(environment=environment, state=state)


create_fixed_series()


class QueueDepth:
    """``buildhook_queue_depth``: queued builds, read from the database at each scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._sessions() as session:
            depth = session.scalar(select(func.count()).select_from(Build)
                                   .where(Build.state == BuildState.QUEUED.value)) or 0
        yield GaugeMetricFamily("buildhook_queue_depth", "Builds queued (waiting for a worker or their trigger's "
                                "max_concurrent).", value=depth)
