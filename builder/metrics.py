"""Prometheus metrics through ``prometheus_client``, in its multiprocess mode.

Every process of a group (``buildhook web``'s gunicorn workers, ``buildhook worker``'s Celery pool
and its relay) writes its counters and histograms to files in the group's directory
(``PROMETHEUS_MULTIPROC_DIR``, set by ``buildhook.metrics_dir`` before this module is imported);
``GET /metrics`` merges the files of every group sharing the data directory. The queue depth is
read from the database at scrape time (``QueueDepth``), so every scrape sees the same number.

Builds are counted by ``measured``: a wrapper around the pipeline's and the reaper's state listener
that observes the queue wait when a build starts (its first attempt) and counts the final state with
the phase durations when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from builder.db.models import Build, BuildState

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
_FINAL = {state.value for state in BuildState if state.finished}
_PHASES = (("clone", "cloning_at", "building_at"), ("build", "building_at", "pushing_at"),
           ("push", "pushing_at", "finished_at"), ("total", "cloning_at", "finished_at"))


def measured(on_state: StateListener, sessions: sessionmaker[Session]) -> StateListener:
    """``on_state`` that also records the build's metrics; a metric never fails a build."""
    def listener(build_id: int, state: str) -> None:
        if state == "running" or state in _FINAL:
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
    BUILDS.labels(state=state, trigger=str(build.trigger_id) if build.trigger_id else "none").inc()
    for phase, start, end in _PHASES:
        began, ended = getattr(build, start), getattr(build, end)
        if began is not None and ended is not None and ended >= began and began >= (build.cloning_at or began):
            BUILD_DURATION.labels(phase=phase).observe(_seconds(began, ended))


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


def count_outbound(state: str | None) -> None:
    """One outbound attempt's outcome (``send_delivery``'s answer; None: nothing was due)."""
    if state is not None:
        OUTBOUND_DELIVERIES.labels(outcome="retry" if state == "pending" else state).inc()


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
