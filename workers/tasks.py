"""Thin tasks: take an id, call ``builder``, retry transient failures with backoff."""

from __future__ import annotations

import random

from celery import shared_task
from flask import current_app

from builder import pipeline
from builder.outbox import relay_pending
from builder.status_reports import report_build_status
from workers.celery_app import REPORT_STATUS, RUN_BUILD


def backoff(attempt: int, base: float = 5.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))


@shared_task(bind=True, name=RUN_BUILD)
def run_build(self, build_id: int) -> str:  # type: ignore[no-untyped-def]
    services = current_app.extensions["buildhook"]
    outcome = pipeline.run_build(services.sessions, services.settings, build_id, on_state=services.report)
    if outcome is pipeline.Outcome.RETRY:
        raise self.retry(countdown=backoff(self.request.retries + 1), max_retries=None)
    return outcome.value


@shared_task(name="buildhook.relay_outbox")
def relay_outbox() -> int:
    services = current_app.extensions["buildhook"]
    return relay_pending(services.sessions, services.send, services.settings.dispatch_grace_seconds)


@shared_task(name=REPORT_STATUS)
def report_status(build_id: int, state: str) -> bool | None:
    """Set the commit status; retried inside, never raises (a status never fails a build)."""
    services = current_app.extensions["buildhook"]
    return report_build_status(services.sessions, services.box, services.settings.public_url, build_id, state)
