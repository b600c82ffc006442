"""One build, start to finish: claim, clone, build, push, record.

Called by the worker task with a build id. Every step updates the build's
state and timestamp in its own short transaction, so the dashboard and the
API see progress while the build runs.

While it runs, one watcher thread (``CancelCheck``) polls the build's cancel
request (``builder/build_actions.py`` records it), refreshes the worker's heartbeat
(``builds.worker``, ``builds.heartbeat_at``; ``builder/reaper.py`` reaps a build whose
worker went silent) and enforces the build timeout; ``BuildLog`` enforces the log size
limit. Any of them stops the engine's build or push at once, and a git fetch (its
processes are killed). A cancelled build ends ``cancelled``; a timed-out build or one
over its log limit ends ``failed``; neither is retried.

Every write that ends an attempt is fenced on the claim (``worker`` and ``attempts``) and
writes the attempt's last log lines in the same transaction: a worker whose build was
reaped and handed to another worker changes nothing, not even the log. When the database
is briefly unavailable, those final writes are tried again for ``FINAL_WRITE_PATIENCE``
seconds. Each attempt has the whole build timeout and log limit; ``started_at`` keeps the
first attempt's start (the queue wait), ``cloning_at`` is the current attempt's.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, TypeVar

import docker
from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from builder.build_context import BuildLimits
from builder.build_engines import BuildEngine, engine_for
from builder.build_log import BuildLog, CancelCheck
from builder.build_processes import git_stopped_on, work_dir_name
from builder.build_secrets import secret_build_args
from builder.build_stops import BuildCancelled, Fence, Heartbeat, StopKind, Timeout
from builder.build_cache import cache_sources, keep_unchanged, previous_build
from builder.buildkit_auth import registry_logins
from builder.clone import changed_files, clone_commit, commit_time, redact_url
from builder.clone_urls import clone_url_problem
from builder.commit_order import history_fetch, settle
from builder.db import database_unavailable
from builder.deployments import link_pushed_build
from builder.errors import PermanentError, TransientError
from builder.fair_share import admissible
from builder.image import BuildSpec, build_image, connect
from builder.image_test import push_tested, rule_test
from builder.models import Build, BuildState, utcnow
from builder.scheduled_runs import pulls_base_images
from builder.request_builds import claimed_order, full_commit, not_pushed
from builder.path_filters import filter_reason
from builder.platforms import build_platforms, rule_platforms
from builder.registry_credentials import RegistryAccess
from builder.secrets import SecretBox
from builder.settings import ConfigError, Settings
from builder.step_containers import attempt_containers, remove_containers
from builder.triggers import clone_auth

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
FINAL_WRITE_PATIENCE = 30.0  # seconds a final write is tried again while the database is unavailable

StateListener = Callable[[int, str], None]
T = TypeVar("T")


def no_listener(_build_id: int, _state: str) -> None:
    return None


class Outcome(enum.Enum):
    NOT_CLAIMED = "not_claimed"  # gone, already running or finished
    SKIPPED = "skipped"  # a path filter found nothing to build
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # someone cancelled it while it ran
    RETRY = "retry"  # a transient failure; the build is queued again
    LOST = "lost"  # the build was reaped while this worker ran it (it had missed its heartbeats)


def worker_name() -> str:
    """This process as ``builds.worker`` names it: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(sessions: sessionmaker[Session], build_id: int, worker: str | None = None) -> bool:
    """Atomically move a queued build to cloning; False if it is not queued, or its trigger's
    ``max_concurrent`` does not let it start yet (``builder.fair_share.admissible``).

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


def _set(sessions: sessionmaker[Session], fence: Fence, **values: object) -> bool:
    with sessions() as session:
        result = session.execute(update(Build).where(*fence.where()).values(**values))
        session.commit()
        return result.rowcount == 1


def oci_labels(build: Build, created: datetime) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.revision": build.commit,
        "org.opencontainers.image.source": redact_url(build.clone_url),
        "org.opencontainers.image.created": created.isoformat(),
        "org.opencontainers.image.ref.name": build.ref_name,
    }
    if build.ref_type == "tag":
        labels["org.opencontainers.image.version"] = build.ref_name
    return labels


def run_build(
    sessions: sessionmaker[Session],
    settings: Settings,
    build_id: int,
    engine: Callable[[str | None], docker.DockerClient] = connect,
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
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None  # claimed a moment ago
        box = SecretBox(settings.secret_key)
        auth = clone_auth(build.trigger, box) if build.trigger else None
        trigger_timeout = build.trigger.build_timeout if build.trigger else None
        secret_args, unreadable = _secret_args(session, box, build)
        test = rule_test(session, build.rule_id)
        pull = pulls_base_images(session, build)
        order = claimed_order(session, build)
        platforms = rule_platforms(session, build.rule_id)
    fence = Fence(build_id, worker, build.attempts)
    on_state(build_id, "running")
    build_log = BuildLog(sessions, build_id, max_bytes=settings.max_log_bytes, background=True,
                         masked=tuple(secret_args.values()))
    timeout = (Timeout(trigger_timeout, "trigger", claimed) if trigger_timeout
               else Timeout(settings.build_timeout, "BUILDHOOK_BUILD_TIMEOUT", claimed)
               if settings.build_timeout > 0 else None)
    cancel = CancelCheck(sessions, build_id, interval=cancel_poll,
                         heartbeat=Heartbeat(worker, build.attempts, max(settings.heartbeat_ttl / 4, 0.2),
                                             grace=settings.heartbeat_ttl),
                         timeout=timeout, build_log=build_log)
    build_log.on_limit = lambda message: cancel.stop(StopKind.LOG_LIMIT, message)
    workdir = settings.effective_work_dir / work_dir_name(build_id, build.attempts)
    build_log(f"Build {build_id} (attempt {build.attempts}): {build.repository} {build.ref} at {build.commit}")
    error: Exception | None = None
    skip: str | None = None
    superseded: str | None = None
    digest = ""
    client: docker.DockerClient | None = None
    try:
        with cancel:
            cancel.raise_if_requested()
            if unreadable:
                raise PermanentError(unreadable)
            build_engine = _build_engine(settings)
            client = engine(settings.docker_host)
            if build.attempts > 1:
                _remove_previous_attempt(sessions, settings, engine, build_id, build.attempts - 1, build_log)
            filters = (tuple(build.included_files), tuple(build.ignored_files))
            refused = clone_url_problem(build.clone_url, settings.allow_file_clones)
            if refused:  # e.g. a trigger stored before clone URLs were checked: git never sees it
                raise PermanentError(refused)
            with git_stopped_on(cancel, workdir):
                checkout = clone_commit(build.clone_url, build.commit, build.ref, workdir / "src", build_log,
                                        auth=auth, before=build.before if any(filters) else None)
                build.commit = full_commit(sessions, fence, checkout, build.commit)
                superseded = settle(sessions, order.at(build.commit), checkout,
                                    history_fetch(build.clone_url, auth, checkout, build_log), build_log)
                skip = None if superseded else _path_filter(checkout, build, filters, build_log)
            cancel.raise_if_requested()
            if not skip and not superseded:
                if not _set(sessions, fence, state=BuildState.BUILDING.value, building_at=utcnow(),
                            platforms=list(platforms) or None):
                    raise _lost(cancel, fence)
                previous = previous_build(sessions, build)
                spec = BuildSpec(
                    checkout=checkout,
                    dockerfile=build.dockerfile,
                    context=build.context,
                    repository=build.image,
                    tags=tuple(build.tags),
                    labels=oci_labels(build, commit_time(checkout)),
                    build_args={**build.build_args, **secret_args},
                    target=build.target,
                    cache_from=cache_sources(client, previous, build_engine, build_log),
                    limits=BuildLimits.from_settings(settings),
                    engine=build_engine,
                    secret_names=tuple(secret_args),
                    registry_logins=registry_logins(RegistryAccess(settings), build.image),
                    pull=pull,
                )

                def pushing() -> None:
                    cancel.raise_if_requested()
                    if not _set(sessions, fence, state=BuildState.PUSHING.value, pushing_at=utcnow()):
                        raise _lost(cancel, fence)

                if platforms and build.push:
                    digest = build_platforms(client, spec, platforms, test, RegistryAccess(settings), workdir,
                                             build_log, cancel, pushing)
                else:  # one image; a build that does not push (a request's) is built for the engine's platform
                    image_id = build_image(client, spec, build_log, cancel)
                    if build_engine.buildkit:
                        keep_unchanged(client, image_id, build, previous, build_log)
                    if not build.push:
                        build_log(not_pushed(build))
                    else:
                        pushing()
                        digest = push_tested(client, image_id, build.image, tuple(build.tags), test,
                                             RegistryAccess(settings), spec.limits, workdir, build_log, cancel)
    except Exception as exc:  # decided below, once the work directory is gone
        error = exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if client is not None:
            _close(client)
        try:
            build_log.flush()
        except Exception as exc:  # kept buffered: the final write below writes them
            log.warning("build %s: could not write its log: %s", build_id, exc)

    if error is not None and (isinstance(error, BuildCancelled) or cancel.check()):
        # Whatever broke once the build was stopped (a stopped stream, a killed git), the stop decides.
        stop = cancel.stop_reason
        if stop is None or stop.kind is StopKind.CANCELLED:
            return _cancelled(build_log, fence, cancel.reason, on_state)
        if stop.kind is StopKind.LOST:
            log.warning("build %s: %s", build_id, stop.message)
            return Outcome.LOST
        return _fail(build_log, fence, stop.message, on_state)  # timed out, log limit: no retry
    if isinstance(error, PermanentError):
        return _fail(build_log, fence, str(error), on_state)
    if isinstance(error, TransientError):
        if build.attempts >= MAX_ATTEMPTS:
            return _fail(build_log, fence, f"{error} (gave up after {build.attempts} attempts)",
                         on_state)
        # Refused: a cancel request came in the meantime, or the build was reaped.
        if not _requeue(build_log, fence, f"Transient failure, will retry: {error}"):
            cancel.check()
            if cancel.stop_reason is not None and cancel.stop_reason.kind is StopKind.LOST:
                return Outcome.LOST
            return _cancelled(build_log, fence, cancel.reason, on_state)
        return Outcome.RETRY
    if error is not None:  # a bug or an unforeseen failure: never leave the build running
        log.error("build %s crashed", build_id, exc_info=error)
        return _fail(build_log, fence, f"internal error: {type(error).__name__}: {error}", on_state)
    if superseded:
        if not _final(build_log, fence, superseded[:1].upper() + superseded[1:],
                      dict(state=BuildState.SUPERSEDED.value, reason=superseded, finished_at=utcnow())):
            return Outcome.LOST
        on_state(build_id, BuildState.SUPERSEDED.value)
        return Outcome.SKIPPED
    if skip:
        if not _final(build_log, fence, f"Skipped: {skip}",
                      dict(state=BuildState.SKIPPED.value, reason=skip, finished_at=utcnow())):
            return Outcome.LOST
        on_state(build_id, BuildState.SKIPPED.value)
        return Outcome.SKIPPED
    if cancel.check():  # too late to stop anything: every tag is in the registry
        build_log("A stop request came after the last tag was pushed: the build counts as succeeded")

    def link(session: Session) -> None:
        done = session.get(Build, build_id, populate_existing=True)
        assert done is not None
        link_pushed_build(session, done)

    # reason=None: a cancel request's "cancelled by ..." does not apply
    if not _final(build_log, fence, f"Succeeded: {build.image}@{digest}" if build.push else "Succeeded (not pushed)",
                  dict(state=BuildState.SUCCEEDED.value, digest=digest or None, finished_at=utcnow(), reason=None),
                  then=link):
        log.warning("build %s was reaped while it ran here; its result is not recorded", build_id)
        return Outcome.LOST
    on_state(build_id, BuildState.SUCCEEDED.value)
    return Outcome.SUCCEEDED


def _lost(cancel: CancelCheck, fence: Fence) -> BuildCancelled:
    """The row is no longer this attempt's (a reaper took it): stop, write nothing more."""
    cancel.stop(StopKind.LOST, f"build {fence.build_id} is no longer run by {fence.worker} (it was reaped)")
    return BuildCancelled(cancel.reason)


def _secret_args(session: Session, box: SecretBox, build: Build) -> tuple[dict[str, str], str | None]:
    """The rule's secret build args (their values are masked in the log), or why they cannot be read."""
    try:
        return secret_build_args(session, box, build), None
    except ValueError:
        return {}, "the rule's secret build args cannot be decrypted: was BUILDHOOK_SECRET_KEY changed?"


def _remove_previous_attempt(sessions: sessionmaker[Session], settings: Settings,
                             engine: Callable[[str | None], docker.DockerClient], build_id: int, attempt: int,
                             build_log: BuildLog) -> None:
    """A retry after the engine went away (or crashed) removes the step containers it left."""
    containers = attempt_containers(sessions, build_id, attempt)
    removed = remove_containers(engine, settings.docker_host, containers) if containers else []
    if removed:
        build_log(f"Removed {len(removed)} container(s) attempt {attempt} left: {', '.join(removed)}")


def _path_filter(checkout: Path, build: Build, filters: tuple[tuple[str, ...], tuple[str, ...]],
                 build_log: BuildLog) -> str | None:
    """Why the path filters skip this build, computed from the clone; None to build."""
    if not any(filters):
        return None
    files = changed_files(checkout, build.before, build.commit) if build.before else None
    if files is None:
        build_log("Changed files unknown (a new ref, or the previous commit is gone): building")
        return None
    build_log(f"Changed files: {', '.join(files[:20])}{' ...' if len(files) > 20 else ''}")
    return filter_reason(files, *filters)


def _build_engine(settings: Settings) -> BuildEngine:
    try:
        return engine_for(settings)
    except ConfigError as exc:  # the worker refuses to start so; a build run elsewhere fails saying why
        raise PermanentError(str(exc)) from None


def _close(client: docker.DockerClient) -> None:
    try:
        client.close()
    except Exception as exc:  # its connections go with the process anyway
        log.warning("could not close the Docker client: %s", exc)


def _final(build_log: BuildLog, fence: Fence, line: str, values: dict[str, object],
           where: tuple[object, ...] = (), then: Callable[[Session], None] | None = None,
           lost_if_refused: bool = True) -> bool:
    """The attempt's final state, with ``line`` (its last log line) and any lines still buffered, in
    one transaction, only while the row is still this attempt's (and matches ``where``); False if not,
    and nothing is written (``lost_if_refused``: the log is closed, the build is another's now).
    While the database is unavailable it is tried again, for ``FINAL_WRITE_PATIENCE`` seconds."""
    build_log.append(line)

    def fenced(session: Session) -> bool:
        result = session.execute(update(Build).where(*fence.where(), *where).values(**values)
                                 .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            return False
        if then is not None:
            then(session)
        return True

    if _patiently(fence.build_id, lambda: build_log.flush(fenced)):
        return True
    if lost_if_refused:
        build_log.close()
    return False


def _patiently(build_id: int, write: Callable[[], T]) -> T:
    """``write()``, again with backoff while the database is unavailable (locked, restarting), for
    ``FINAL_WRITE_PATIENCE`` seconds: a hiccup must not leave the build running until it is reaped."""
    deadline = time.monotonic() + FINAL_WRITE_PATIENCE
    pause = 0.2
    while True:
        try:
            return write()
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("build %s: the database is unavailable (%s); its final state is written again in "
                        "%.1f s", build_id, exc, pause)
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def _fail(build_log: BuildLog, fence: Fence, error: str,
          on_state: StateListener) -> Outcome:
    if not _final(build_log, fence, f"FAILED: {error}",
                  dict(state=BuildState.FAILED.value, error=error, reason=None, finished_at=utcnow())):
        return Outcome.LOST
    on_state(fence.build_id, BuildState.FAILED.value)
    return Outcome.FAILED


def _requeue(build_log: BuildLog, fence: Fence, line: str) -> bool:
    """Put the build back to queued for a retry, with ``line``, unless a cancel was requested (or it is
    not ours): then nothing is written and the lines stay buffered."""
    return _final(build_log, fence, line,
                  dict(state=BuildState.QUEUED.value, dispatched_at=utcnow(), heartbeat_at=None),
                  where=(Build.cancel_requested_at.is_(None),), lost_if_refused=False)


def _cancelled(build_log: BuildLog, fence: Fence, reason: str,
               on_state: StateListener) -> Outcome:
    # "Cancelled by <who>": the log's last line
    if not _final(build_log, fence, reason[:1].upper() + reason[1:],
                  dict(state=BuildState.CANCELLED.value, reason=reason, finished_at=utcnow())):
        return Outcome.LOST
    on_state(fence.build_id, BuildState.CANCELLED.value)
    return Outcome.CANCELLED
