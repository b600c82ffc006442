"""The worker's periodic work, declared in one table (``PERIODIC_WORK``) and run by a timer thread of the worker.

The thread starts when the Celery worker is ready (``worker_ready``) and runs a pass every
``--relay-interval`` seconds: each job whose interval elapsed runs, in the table's order (the reaper
before the relay, so a reaped build is sent again in the same pass). It runs beside the broker, not
through it: the relay's job is to send what the broker never got, so it must run while the broker is
down. A job that fails is logged; the others run on.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery.signals import worker_ready

from builder.container import Container
from builder.notify.deliveries import due_deliveries
from builder.metrics import measured
from builder.builds.outbox import forget_dispatches, relay_pending, undispatched_deployments
from builder.db.pruning import prune_old
from builder.builds.run.reaper import reap
from builder.registries.retention import prune_every_rule
from builder.builds.scheduled_runs import run_due_schedules
from workers.broker_watch import BrokerWatch
from workers.celery_app import celery_config

log = logging.getLogger(__name__)

EVERY_PASS = 0.0  # an interval: the job runs on every pass of the timer
SWEEP_EVERY = 3600.0  # seconds between retention sweeps (a build's success prunes its rule at once)


def reap_dead_workers(container: Container, _watch: BrokerWatch) -> None:
    """Running builds whose worker stopped sending heartbeats go back to queued (unsent) or fail."""
    reap(container.sessions, container.settings, on_state=measured(container.report, container.sessions))


def resend_lost(container: Container, watch: BrokerWatch) -> None:
    """When the broker lost its messages, every queued build and pending deployment it was handed is
    unmarked, so the relay that follows sends them again."""
    def forget() -> None:
        builds, deployments = forget_dispatches(container.sessions)
        if builds or deployments:
            log.warning("the broker lost its messages (it restarted without them): sending %d queued build(s) "
                        "and %d deployment(s) again", builds, deployments)

    watch.after_loss(forget)


def relay_outbox(container: Container, _watch: BrokerWatch) -> None:
    """Builds and deployments the broker never got, and deliveries that are due."""
    grace = container.settings.dispatch_grace_seconds
    relay_pending(container.sessions, container.send, grace)
    container.start_deployments(undispatched_deployments(container.sessions, grace))
    container.send_deliveries(due_deliveries(container.sessions))


def run_schedules(container: Container, _watch: BrokerWatch) -> None:
    """Schedules that are due (each due time runs once, whichever worker claims it)."""
    run_due_schedules(container.sessions, container.settings,
                      container.start_builds)


def sweep_retention(container: Container, _watch: BrokerWatch) -> None:
    prune_every_rule(container.sessions, container.settings)
    prune_old(container.sessions, container.settings.keep_days)


@dataclass(frozen=True)
class Periodic:
    name: str
    interval: float  # seconds; EVERY_PASS: every pass
    run: Callable[[Container, BrokerWatch], None]


PERIODIC_WORK: tuple[Periodic, ...] = (
    Periodic("reaper", EVERY_PASS, reap_dead_workers),
    Periodic("broker watch", EVERY_PASS, resend_lost),
    Periodic("outbox relay", EVERY_PASS, relay_outbox),
    Periodic("schedules", EVERY_PASS, run_schedules),
    Periodic("retention", SWEEP_EVERY, sweep_retention),
)


class PeriodicRunner:
    """Runs ``PERIODIC_WORK`` on a daemon thread, a pass every ``pass_interval`` seconds."""

    def __init__(self, container: Container, pass_interval: float,
                 work: tuple[Periodic, ...] = PERIODIC_WORK) -> None:
        self.container = container
        self.pass_interval = pass_interval
        self.work = work
        self.watch = BrokerWatch(str(celery_config(container.settings)["broker_url"]))
        self._last_run: dict[str, float] = {}

    def run_pass(self) -> None:
        now = time.monotonic()
        for job in self.work:
            last = self._last_run.get(job.name)
            if last is not None and now - last < job.interval:
                continue
            self._last_run[job.name] = now
            try:
                job.run(self.container, self.watch)
            except Exception as exc:  # the broker or database is down: the next pass tries again
                log.warning("%s: %s", job.name, exc)
                print(f"buildhook: {job.name}: {exc}", file=sys.stderr)

    def run_forever(self) -> None:
        while True:
            self.run_pass()
            time.sleep(self.pass_interval)

    def start(self, **_signal_kwargs: object) -> None:
        threading.Thread(target=self.run_forever, name="periodic-work", daemon=True).start()


def run_when_worker_ready(container: Container, pass_interval: float) -> PeriodicRunner:
    """Start the periodic work once the Celery worker of this process is ready."""
    runner = PeriodicRunner(container, pass_interval)
    worker_ready.connect(runner.start, weak=False)
    return runner
