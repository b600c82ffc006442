"""Thin tasks: take an id, call ``builder``, retry transient failures with backoff."""

from __future__ import annotations

import logging
import random
import time

from celery import shared_task
from flask import current_app
from sqlalchemy import select

from builder import pipeline
from builder.deliveries import due_deliveries, send_delivery
from builder.deployments import delivery_finished, run_deployment
from builder.metrics import count_outbound, measured
from builder.notifications import BUILD_EVENTS, build_payload, notify
from builder.models import Build
from builder.fair_share import next_waiting, release
from builder.outbox import dispatch, forget_dispatches, relay_pending, undispatched_deployments
from builder.reaper import reap
from builder.pruning import prune_old
from builder.retention import prune_every_rule, prune_rule
from builder.scheduled_runs import run_due_schedules
from builder.status_reports import report_build_status
from workers.broker_watch import BrokerWatch
from workers.celery_app import DELIVER, REPORT_STATUS, RUN_BUILD, RUN_DEPLOYMENT

log = logging.getLogger(__name__)


def backoff(attempt: int, base: float = 5.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))


@shared_task(bind=True, name=RUN_BUILD)
def run_build(self, build_id: int) -> str:  # type: ignore[no-untyped-def]
    services = current_app.extensions["buildhook"]
    outcome = pipeline.run_build(services.sessions, services.settings, build_id,
                                 on_state=measured(services.report, services.sessions))
    if outcome is pipeline.Outcome.NOT_CLAIMED:
        release(services.sessions, build_id)  # still queued: its trigger's limit holds it back
    elif outcome is not pipeline.Outcome.RETRY:  # a slot of its trigger is free: the next in line starts
        dispatch(services.sessions, services.send, next_waiting(services.sessions, build_id))
    if outcome is pipeline.Outcome.SUCCEEDED:
        _retain(services, build_id)
    if outcome is pipeline.Outcome.RETRY:
        raise self.retry(countdown=backoff(self.request.retries + 1), max_retries=None)
    return outcome.value


def relay_everything(services, watch: BrokerWatch | None = None) -> None:  # type: ignore[no-untyped-def]
    """One pass of the outbox relay: builds and deployments the broker never got, due deliveries.

    First the reaper: running builds whose worker stopped sending heartbeats are put back
    to queued (unsent, so ``relay_pending`` sends them right after) or failed. Then, when
    ``watch`` finds that the broker lost its messages, every queued build and pending deployment
    it was handed is unmarked, so this same pass sends them again.
    """
    try:
        reap(services.sessions, services.settings, on_state=measured(services.report, services.sessions))
    except Exception as exc:  # the database or engine is away: the relay still runs, the next pass reaps
        log.warning("reaper: %s", exc)
    if watch is not None:
        watch.after_loss(lambda: _resend_lost(services))
    relay_pending(services.sessions, services.send, services.settings.dispatch_grace_seconds)
    _periodic(services)
    services.start_deployments(undispatched_deployments(services.sessions, services.settings.dispatch_grace_seconds))
    services.send_deliveries(due_deliveries(services.sessions))


def _periodic(services) -> None:  # type: ignore[no-untyped-def]
    """The worker's periodic work: schedules that are due (each due time runs once, whichever worker
    claims it) on every pass; retention and pruning every ``SWEEP_EVERY`` seconds. A failure is
    logged; the relay's other work goes on."""
    try:
        run_due_schedules(services.sessions, services.settings,
                          lambda ids: dispatch(services.sessions, services.send, ids))
    except Exception as exc:
        log.warning("schedules: %s", exc)
    global _last_sweep
    if time.monotonic() - _last_sweep < SWEEP_EVERY:
        return
    _last_sweep = time.monotonic()
    try:
        prune_every_rule(services.sessions, services.settings)
        prune_old(services.sessions, services.settings.keep_days)
    except Exception as exc:
        log.warning("retention: %s", exc)


SWEEP_EVERY = 3600.0  # seconds between a relay's retention sweeps (a build's success prunes its rule at once)
_last_sweep = -SWEEP_EVERY


def _retain(services, build_id: int) -> None:  # type: ignore[no-untyped-def]
    """After a build succeeded: its rule's tags past ``retention.keep`` are deleted (never failing it)."""
    try:
        with services.sessions() as session:
            rule_id = session.scalar(select(Build.rule_id).where(Build.id == build_id))
        if rule_id is not None:
            prune_rule(services.sessions, services.settings, rule_id)
    except Exception as exc:
        log.warning("retention after build %s: %s", build_id, exc)


def _resend_lost(services) -> None:  # type: ignore[no-untyped-def]
    builds, deployments = forget_dispatches(services.sessions)
    if builds or deployments:
        log.warning("the broker lost its messages (it restarted without them): sending %d queued build(s) and "
                    "%d deployment(s) again", builds, deployments)


@shared_task(name=REPORT_STATUS)
def report_status(build_id: int, state: str) -> bool | None:
    """Announce a build's state: subscriptions' webhooks, then the commit status (never raises)."""
    services = current_app.extensions["buildhook"]
    event = BUILD_EVENTS.get(state)
    if event:
        with services.sessions() as session:
            build = session.get(Build, build_id)
            if build is not None:
                payload = {**build_payload(build, services.settings.public_url), "state": state}
                queued = notify(session, event, payload, trigger_id=build.trigger_id, ref_name=build.ref_name,
                                build_id=build.id)
                session.commit()
                services.send_deliveries([d.id for d in queued])
    return report_build_status(services.sessions, services.box, services.settings.public_url, build_id, state)


@shared_task(name=RUN_DEPLOYMENT)
def deploy(deployment_id: int) -> None:
    services = current_app.extensions["buildhook"]
    settings = services.settings
    queued = run_deployment(services.sessions, settings, deployment_id, stable_seconds=settings.deploy_stable_seconds)
    services.send_deliveries(queued)


@shared_task(name=DELIVER)
def deliver(delivery_id: int) -> str | None:
    services = current_app.extensions["buildhook"]
    settings = services.settings
    # Notifications a finished deployment queues are sent by the relay's next pass.
    state = send_delivery(services.sessions, services.box, delivery_id, backoff_base=settings.delivery_backoff,
                          on_finished=delivery_finished(settings), policy=settings.target_policy())
    count_outbound(state)
    return state
