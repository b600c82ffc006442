"""One build, start to finish: claim, clone, build, push, record.

Called by the worker task with a build id. Every step updates the build's
state and timestamp in its own short transaction, so the dashboard and the
API see progress while the build runs.

While it runs, a ``CancelCheck`` polls the build's cancel request
(``builder/build_actions.py`` records it): the engine's build or push is stopped
at once, a clone between steps; the build ends ``cancelled``, never retried.
"""

from __future__ import annotations

import enum
import logging
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Callable

import docker
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from builder.build_log import BuildCancelled, BuildLog, CancelCheck
from builder.clone import changed_files, clone_commit, redact_url
from builder.deployments import link_pushed_build
from builder.errors import PermanentError, TransientError
from builder.image import BuildSpec, build_image, connect, local_image, push_image
from builder.models import Build, BuildState, utcnow
from builder.path_filters import filter_reason
from builder.secrets import SecretBox
from builder.settings import Settings
from builder.triggers import clone_auth

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


StateListener = Callable[[int, str], None]


def _no_listener(_build_id: int, _state: str) -> None:
    return None


class Outcome(enum.Enum):
    NOT_CLAIMED = "not_claimed"  # gone, already running or finished
    SKIPPED = "skipped"  # a path filter found nothing to build
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # someone cancelled it while it ran
    RETRY = "retry"  # a transient failure; the build is queued again


def claim(sessions: sessionmaker[Session], build_id: int) -> bool:
    """Atomically move a queued build to cloning; False if it is not queued."""
    now = utcnow()
    with sessions() as session:
        result = session.execute(
            update(Build)
            .where(Build.id == build_id, Build.state == BuildState.QUEUED.value)
            .values(
                state=BuildState.CLONING.value,
                started_at=now,
                cloning_at=now,
                attempts=Build.attempts + 1,
            )
        )
        session.commit()
        return result.rowcount == 1


def _set(sessions: sessionmaker[Session], build_id: int, **values: object) -> None:
    with sessions() as session:
        session.execute(update(Build).where(Build.id == build_id).values(**values))
        session.commit()


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
    on_state: StateListener = _no_listener,
    cancel_poll: float = 0.5,
) -> Outcome:
    """Run one build; ``on_state`` hears "running" and the final state (for commit statuses).

    A cancel request is looked for every ``cancel_poll`` seconds while the build runs.
    """
    if not claim(sessions, build_id):
        return Outcome.NOT_CLAIMED
    with sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None  # claimed a moment ago
        auth = clone_auth(build.trigger, SecretBox(settings.secret_key)) if build.trigger else None
    on_state(build_id, "running")
    build_log = BuildLog(sessions, build_id)
    cancel = CancelCheck(sessions, build_id, interval=cancel_poll)
    workdir = settings.effective_work_dir / f"build-{build_id}-{uuid.uuid4().hex[:8]}"
    build_log(f"Build {build_id} (attempt {build.attempts}): {build.repository} {build.ref} at {build.commit}")
    error: Exception | None = None
    skip: str | None = None
    digest = ""
    try:
        with cancel:
            cancel.raise_if_requested()
            client = engine(settings.docker_host)
            filters = (tuple(build.included_files), tuple(build.ignored_files))
            checkout = clone_commit(build.clone_url, build.commit, build.ref, workdir / "src", build_log,
                                    auth=auth, before=build.before if any(filters) else None)
            cancel.raise_if_requested()
            skip = _path_filter(checkout, build, filters, build_log)
            if not skip:
                _set(sessions, build_id, state=BuildState.BUILDING.value, building_at=utcnow())
                spec = BuildSpec(
                    checkout=checkout,
                    dockerfile=build.dockerfile,
                    context=build.context,
                    repository=build.image,
                    tags=tuple(build.tags),
                    labels=oci_labels(build, utcnow()),
                    build_args=dict(build.build_args),
                    target=build.target,
                    cache_from=_layer_cache(sessions, client, build, build_log),
                )
                build_image(client, spec, build_log, cancel)
                cancel.raise_if_requested()
                _set(sessions, build_id, state=BuildState.PUSHING.value, pushing_at=utcnow())
                digest = push_image(client, build.image, build.tags, build_log, _registry_auth(settings),
                                    cancel=cancel)
    except Exception as exc:  # decided below, once the work directory is gone
        error = exc
    finally:
        build_log.flush()
        shutil.rmtree(workdir, ignore_errors=True)

    if error is not None and (isinstance(error, BuildCancelled) or cancel.check()):
        # Whatever broke once a cancel was requested (a stopped stream, a retryable error), it ends here.
        return _cancelled(sessions, build_log, build_id, cancel.reason, on_state)
    if isinstance(error, PermanentError):
        return _fail(sessions, build_log, build_id, str(error), on_state)
    if isinstance(error, TransientError):
        if build.attempts >= MAX_ATTEMPTS:
            return _fail(sessions, build_log, build_id, f"{error} (gave up after {build.attempts} attempts)",
                         on_state)
        build_log(f"Transient failure, will retry: {error}")
        build_log.flush()
        if not _requeue(sessions, build_id):  # a cancel request came in the meantime
            cancel.check()
            return _cancelled(sessions, build_log, build_id, cancel.reason, on_state)
        return Outcome.RETRY
    if error is not None:  # a bug or an unforeseen failure: never leave the build running
        log.error("build %s crashed", build_id, exc_info=error)
        return _fail(sessions, build_log, build_id, f"internal error: {type(error).__name__}: {error}", on_state)
    if skip:
        build_log(f"Skipped: {skip}")
        build_log.flush()
        _set(sessions, build_id, state=BuildState.SKIPPED.value, reason=skip, finished_at=utcnow())
        on_state(build_id, BuildState.SKIPPED.value)
        return Outcome.SKIPPED
    if cancel.check():  # too late to stop anything: every tag is in the registry
        build_log("A cancel request came after the last tag was pushed: the build counts as succeeded")
    build_log(f"Succeeded: {build.image}@{digest}")
    build_log.flush()
    with sessions() as session:
        done = session.get(Build, build_id)
        assert done is not None
        done.state, done.digest, done.finished_at = BuildState.SUCCEEDED.value, digest, utcnow()
        done.reason = None  # a cancel request's "cancelled by ..." does not apply
        link_pushed_build(session, done)
        session.commit()
    on_state(build_id, BuildState.SUCCEEDED.value)
    return Outcome.SUCCEEDED


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


def _layer_cache(
    sessions: sessionmaker[Session], client: docker.DockerClient, build: Build, build_log: BuildLog
) -> tuple[str, ...]:
    """The last image this rule pushed, when the engine still has it."""
    if build.rule_id is None:
        return ()
    with sessions() as session:
        previous = session.scalars(
            select(Build)
            .where(Build.rule_id == build.rule_id, Build.state == BuildState.SUCCEEDED.value,
                   Build.id != build.id)
            .order_by(Build.id.desc())
            .limit(1)
        ).first()
    if previous is None:
        return ()
    reference = f"{previous.image}:{previous.tags[0]}"
    if not local_image(client, reference):
        return ()
    build_log(f"Using {reference} (build {previous.id}) as the layer cache")
    return (reference,)


def _fail(sessions: sessionmaker[Session], build_log: BuildLog, build_id: int, error: str,
          on_state: StateListener) -> Outcome:
    build_log(f"FAILED: {error}")
    build_log.flush()
    _set(sessions, build_id, state=BuildState.FAILED.value, error=error, reason=None, finished_at=utcnow())
    on_state(build_id, BuildState.FAILED.value)
    return Outcome.FAILED


def _requeue(sessions: sessionmaker[Session], build_id: int) -> bool:
    """Put the build back to queued for a retry, unless a cancel was requested."""
    with sessions() as session:
        result = session.execute(
            update(Build)
            .where(Build.id == build_id, Build.cancel_requested_at.is_(None))
            .values(state=BuildState.QUEUED.value, dispatched_at=utcnow())
        )
        session.commit()
        return result.rowcount == 1


def _cancelled(sessions: sessionmaker[Session], build_log: BuildLog, build_id: int, reason: str,
               on_state: StateListener) -> Outcome:
    build_log(reason[:1].upper() + reason[1:])  # "Cancelled by <who>": the log's last line
    build_log.flush()
    _set(sessions, build_id, state=BuildState.CANCELLED.value, reason=reason, finished_at=utcnow())
    on_state(build_id, BuildState.CANCELLED.value)
    return Outcome.CANCELLED


def _registry_auth(settings: Settings) -> dict[str, str] | None:
    if not settings.registry_username:
        return None
    return {"username": settings.registry_username, "password": settings.registry_password or ""}
