"""Thin tasks: take an id, call ``builder``, retry transient failures with backoff.

Each task works with the process's container (``workers.celery_app.bound_container``).
"""

from __future__ import annotations

import logging
import random

from celery import Task
from sqlalchemy import select

from builder.builds.run import pipeline
from builder.container import Container
from builder.notify.deliveries import send_delivery
from builder.deploys.deployments import delivery_finished
from builder.deploys.runner import run_deployment
from builder.builds.fair_share import next_waiting, release
from builder.metrics import count_outbound, measured
from builder.db.models import Build
from builder.notify.subscriptions import BUILD_EVENTS, build_payload, notify
from builder.builds.outbox import dispatch
from builder.registries.retention import prune_rule
from builder.notify.status_reports import report_build_status
from workers.celery_app import DELIVER, REPORT_STATUS, RUN_BUILD, RUN_DEPLOYMENT, app, bound_container

log = logging.getLogger(__name__)


def backoff(attempt: int, base: float = 5.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))


@app.task(bind=True, name=RUN_BUILD)
def run_build(self: Task, build_id: int) -> str:
    container = bound_container()
    outcome = pipeline.run_build(container.sessions, container.settings, build_id,
                                 on_state=measured(container.report, container.sessions))
    if outcome is pipeline.Outcome.NOT_CLAIMED:
        release(container.sessions, build_id)  # still queued: its trigger's limit holds it back
    elif outcome is not pipeline.Outcome.RETRY:  # a slot of its trigger is free: the next in line starts
        dispatch(container.sessions, container.send, next_waiting(container.sessions, build_id))
    if outcome is pipeline.Outcome.SUCCEEDED:
        _retain(container, build_id)
    if outcome is pipeline.Outcome.RETRY:
        raise self.retry(countdown=backoff(self.request.retries + 1), max_retries=None)
    return outcome.value


def _retain(container: Container, build_id: int) -> None:
    """After a build succeeded: its rule's tags past ``retention.keep`` are deleted (never failing it)."""
    try:
        with container.sessions() as session:
            rule_id = session.scalar(select(Build.rule_id).where(Build.id == build_id))
        if rule_id is not None:
            prune_rule(container.sessions, container.settings, rule_id)
    except Exception as exc:
        log.warning("retention after build %s: %s", build_id, exc)


@app.task(name=REPORT_STATUS)
def report_status(build_id: int, state: str) -> bool | None:
    """Announce a build's state: subscriptions' webhooks, then the commit status (never raises)."""
    container = bound_container()
    event = BUILD_EVENTS.get(state)
    if event:
        with container.sessions() as session:
            build = session.get(Build, build_id)
            if build is not None:
                payload = {**build_payload(build, container.settings.public_url), "state": state}
                queued = notify(session, event, payload, max_attempts=container.settings.delivery_attempts,
                                trigger_id=build.trigger_id, ref_name=build.ref_name,
                                build_id=build.id)
                session.commit()
                container.send_deliveries([d.id for d in queued])
    return report_build_status(container.sessions, container.box, container.settings.public_url, build_id, state)


@app.task(name=RUN_DEPLOYMENT)
def deploy(deployment_id: int) -> None:
    container = bound_container()
    settings = container.settings
    queued = run_deployment(container.sessions, settings, deployment_id, stable_seconds=settings.deploy_stable_seconds)
    container.send_deliveries(queued)


@app.task(name=DELIVER)
def deliver(delivery_id: int) -> str | None:
    container = bound_container()
    settings = container.settings
    # Notifications a finished deployment queues are sent by the relay's next pass.
    state = send_delivery(container.sessions, container.box, delivery_id, backoff_base=settings.delivery_backoff,
                          on_finished=delivery_finished(settings), policy=settings.target_policy())
    count_outbound(state)
    return state
