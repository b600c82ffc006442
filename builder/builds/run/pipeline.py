"""One build, start to finish: claim, check out, build, push, record, as small steps.

Called by the worker task with a build id. Every step updates the build's
state and timestamp in its own short transaction, so the dashboard and the
API see progress while the build runs.

While it runs, one watcher thread (``CancelCheck``) polls the build's cancel
request (``builder/builds/actions.py`` records it), refreshes the worker's heartbeat
(``builds.worker``, ``builds.heartbeat_at``; ``builder/builds/run/reaper.py`` reaps a build whose
worker went silent) and enforces the build timeout; ``BuildLog`` enforces the log size
limit. Any of them stops the engine's build or push at once, and a git fetch (its
processes are killed). A cancelled build ends ``cancelled``; a timed-out build or one
over its log limit ends ``failed``; neither is retried.

How an attempt ends (a final state, written fenced on the claim) is ``builder/builds/run/outcome.py``'s.
Each attempt has the whole build timeout and log limit; ``started_at`` keeps the first attempt's
start (the queue wait), ``cloning_at`` is the current attempt's.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.run.log import BuildLog, CancelCheck
from builder.builds.run.outcome import MAX_ATTEMPTS, Outcome, StateListener, decide, no_listener, record
from builder.builds.run.processes import work_dir_name
from builder.builds.run.secret_args import secret_build_args
from builder.builds.run.stops import BuildCancelled, Fence, Heartbeat, StopKind, Timeout
from builder.builds.fair_share import admissible
from builder.builds.image.classic import connect
from builder.builds.image.test import rule_test
from builder.db.models import Build, BuildState, utcnow
from builder.builds.run.pipeline_steps import (
    Attempt,
    AttemptInputs,
    Engine,
    Result,
    build_and_push,
    check_out,
    clean_up,
    prepare,
    record_success,
)
from builder.builds.image.platforms import rule_platforms
from builder.builds.request_builds import claimed_order
from builder.builds.scheduled_runs import pulls_base_images
from builder.secrets import SecretBox
from builder.settings import Settings
from builder.triggers.services import clone_auth

__all__ = ["MAX_ATTEMPTS", "Outcome", "StateListener", "claim", "no_listener", "run_build", "worker_name"]

log = logging.getLogger(__name__)


def worker_name() -> str:
    """This process as ``builds.worker`` names it: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(sessions: sessionmaker[Session], build_id: int, worker: str | None = None) -> bool:
    """Atomically move a queued build to cloning; False if it is not queued, or its trigger's
    ``max_concurrent`` does not let it start yet (``builder.builds.fair_share.admissible``).

    Records the claiming ``worker`` and its first heartbeat in the same UPDATE. ``started_at``
    keeps the first attempt's start (a retry's queue wait is not reset); ``cloning_at`` is this
    attempt's.
    """
    now = utcnow()
    with sessions() as session:
        result = session.execute(
            update(Build)
            .where(Build.id == build_id, Build.state == BuildState.QUEUED.value, admissible())
            .values(
                state=BuildState.CLONING.value,
                started_at=func.coalesce(Build.started_at, now),
                cloning_at=now,
                attempts=Build.attempts + 1,
                worker=worker or worker_name(),
                heartbeat_at=now,
            )
        )
        session.commit()
        return result.rowcount == 1


def run_build(
    sessions: sessionmaker[Session],
    settings: Settings,
    build_id: int,
    engine: Engine = connect,
    on_state: StateListener = no_listener,
    cancel_poll: float = 0.5,
    worker: str | None = None,
) -> Outcome:
    """Run one build; ``on_state`` hears "running" and the final state (for commit statuses).

    A cancel request is looked for every ``cancel_poll`` seconds while the build runs; the
    heartbeat is sent every ``settings.heartbeat_ttl / 4`` seconds (after a stop, for one TTL at
    most: a step that hangs past it is left to the reaper).
    """
    worker = worker or worker_name()
    if not claim(sessions, build_id, worker):
        return Outcome.NOT_CLAIMED
    claimed = time.monotonic()
    inputs = read_inputs(sessions, settings, build_id)
    fence = Fence(build_id, worker, inputs.build.attempts)
    on_state(build_id, "running")
    attempt = start_attempt(sessions, settings, inputs, fence, engine, claimed, cancel_poll)
    error, result = run_steps(attempt)
    cancel = attempt.cancel
    stopped = error is not None and (isinstance(error, BuildCancelled) or cancel.check())
    decision = decide(error, stopped, cancel.stop_reason, result.skip, result.superseded, inputs.build.attempts)
    return record(decision, attempt.build_log, fence, cancel, on_state, lambda: record_success(attempt, result.digest))


def read_inputs(sessions: sessionmaker[Session], settings: Settings, build_id: int) -> AttemptInputs:
    """What the claimed build's attempt needs, read in one transaction."""
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None  # claimed a moment ago
        box = SecretBox(settings.secret_key)
        auth = clone_auth(build.trigger, box) if build.trigger else None
        secret_args, unreadable = _secret_args(session, box, build)
        return AttemptInputs(
            build=build,
            auth=auth,
            trigger_timeout=build.trigger.build_timeout if build.trigger else None,
            secret_args=secret_args,
            unreadable=unreadable,
            test=rule_test(session, build.rule_id),
            pull=pulls_base_images(session, build),
            order=claimed_order(session, build),
            platforms=rule_platforms(session, build.rule_id),
        )


def start_attempt(sessions: sessionmaker[Session], settings: Settings, inputs: AttemptInputs, fence: Fence,
                  engine: Engine, claimed: float, cancel_poll: float) -> Attempt:
    """The attempt's log and its watcher (cancel requests, heartbeat, timeout, log limit)."""
    build, build_id = inputs.build, fence.build_id
    build_log = BuildLog(sessions, build_id, max_bytes=settings.max_log_bytes, background=True,
                         masked=tuple(inputs.secret_args.values()))
    timeout = (Timeout(inputs.trigger_timeout, "trigger", claimed) if inputs.trigger_timeout
               else Timeout(settings.build_timeout, "BUILDHOOK_BUILD_TIMEOUT", claimed)
               if settings.build_timeout > 0 else None)
    cancel = CancelCheck(sessions, build_id, interval=cancel_poll,
                         heartbeat=Heartbeat(fence.worker, build.attempts, max(settings.heartbeat_ttl / 4, 0.2),
                                             grace=settings.heartbeat_ttl),
                         timeout=timeout, build_log=build_log)
    build_log.on_limit = lambda message: cancel.stop(StopKind.LOG_LIMIT, message)
    workdir = settings.effective_work_dir / work_dir_name(build_id, build.attempts)
    build_log(f"Build {build_id} (attempt {build.attempts}): {build.repository} {build.ref} at {build.commit}")
    return Attempt(sessions, settings, inputs, fence, build_log, cancel, workdir, engine)


def run_steps(attempt: Attempt) -> tuple[Exception | None, Result]:
    """Prepare, check out, build and push; the error raised (decided once the work directory is gone)."""
    result = Result()
    try:
        with attempt.cancel:
            build_engine = prepare(attempt)
            checkout, result.superseded, result.skip = check_out(attempt)
            attempt.cancel.raise_if_requested()
            if not result.skip and not result.superseded:
                result.digest = build_and_push(attempt, checkout, build_engine)
    except Exception as exc:
        return exc, result
    finally:
        clean_up(attempt)
    return None, result


def _secret_args(session: Session, box: SecretBox, build: Build) -> tuple[dict[str, str], str | None]:
    """The rule's secret build args (their values are masked in the log), or why they cannot be read."""
    try:
        return secret_build_args(session, box, build), None
    except ValueError:
        return {}, "the rule's secret build args cannot be decrypted: was BUILDHOOK_SECRET_KEY changed?"
