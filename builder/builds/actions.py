"""Cancel and rebuild: what the buttons of a build do.

Cancelling a queued build finishes it at once; its message may still reach a
worker, whose claim only takes queued builds. A running build cannot be stopped
from here: the request is recorded in ``cancel_requested_at`` (with who asked,
in ``reason``) and the worker running it stops it (``builder.builds.run.pipeline``, a
``CancelCheck`` polls the row). Each change is one conditional UPDATE, so a
worker claiming, requeueing or finishing the build at the same moment cannot
be overwritten. The caller commits; ``cancel`` tells it whether the build ended
here (it was queued: no worker will announce or count it) or a worker was asked.

A rebuild is a new queued build of the same commit with the same image, tags
and build settings; path filters are not checked again (a rebuild means build).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from builder.builds.queries import get_build
from builder.triggers.clone_urls import check_clone_url
from builder.errors import Conflict
from builder.db.models import Build, BuildState, utcnow
from builder.settings import Settings

RUNNING = (BuildState.CLONING.value, BuildState.BUILDING.value, BuildState.PUSHING.value)


@dataclass(frozen=True)
class Cancellation:
    build: Build
    ended: bool  # True: it was queued and is cancelled now; False: its worker was asked to stop it


def cancel_build(session: Session, build_id: int, by: str) -> Build:
    """Cancel a queued build now, or ask the worker to stop a running one (``cancel``)."""
    return cancel(session, build_id, by).build


def cancel(session: Session, build_id: int, by: str) -> Cancellation:
    """Cancel a queued build now, or ask the worker to stop a running one.

    Asking again while the worker has not stopped it yet changes nothing. Raises
    ``NotFound`` for an unknown build and ``Conflict`` for a finished one.
    """
    build = get_build(session, build_id)
    reason = f"cancelled by {by}"
    ended = False
    for _ in range(5):  # the state may move under us (claimed, requeued for a retry): look again
        now = utcnow()
        if _update(session, build_id, Build.state == BuildState.QUEUED.value,
                   state=BuildState.CANCELLED.value, reason=reason, cancel_requested_at=now, finished_at=now):
            ended = True
            break
        if _update(session, build_id, Build.state.in_(RUNNING), Build.cancel_requested_at.is_(None),
                   cancel_requested_at=now, reason=reason):
            break
        state, requested = session.execute(
            select(Build.state, Build.cancel_requested_at).where(Build.id == build_id)
        ).one()
        if state in RUNNING and requested is not None:
            break  # asked already; the worker is on it
        if state != BuildState.QUEUED.value and state not in RUNNING:
            raise Conflict(f"build {build_id} already finished ({state})")
    else:
        raise Conflict(f"build {build_id} keeps changing state; try again")
    session.refresh(build)
    return Cancellation(build, ended)


def _update(session: Session, build_id: int, *where: object, **values: object) -> bool:
    result = session.execute(
        update(Build).where(Build.id == build_id, *where).values(**values)  # type: ignore[arg-type]
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def rebuild(session: Session, build_id: int, settings: Settings, by: str | None = None) -> Build:
    """A new queued build like ``build_id`` (unsaved until the caller commits; not dispatched).

    Raises ``Conflict`` when the build's trigger was deleted or is disabled: the trigger
    holds the clone credentials, and its clone URL is used as it is now (``InputError`` when it
    is not allowed; ``settings``: BUILDHOOK_ALLOW_FILE_CLONES). The image name is copied as
    built, already qualified with the registry.
    ``by``: the person rebuilding it (``started_by``).
    """
    old = get_build(session, build_id)
    trigger = old.trigger
    if trigger is None:
        raise Conflict(f"the trigger of build {build_id} was deleted: it cannot be built again")
    if not trigger.enabled:
        raise Conflict(f"trigger {trigger.id} is disabled")
    check_clone_url(trigger.clone_url, settings.allow_file_clones)
    build = Build(
        trigger_id=trigger.id,
        rule_id=old.rule_id,
        provider=old.provider,
        repository=old.repository,
        clone_url=trigger.clone_url,
        before=old.before,
        ref=old.ref,
        ref_type=old.ref_type,
        ref_name=old.ref_name,
        commit=old.commit,
        commit_message=old.commit_message,
        author=old.author,
        image=old.image,
        tags=list(old.tags),
        dockerfile=old.dockerfile,
        context=old.context,
        build_args=dict(old.build_args),
        target=old.target,
        pull_request=old.pull_request,  # a request's build stays one: a fork's gets no secrets and no push
        base_branch=old.base_branch,
        fork=old.fork,
        push=old.push,
        included_files=[],
        ignored_files=[],
        state=BuildState.QUEUED.value,
        created_at=utcnow(),
        origin="rebuild",
        started_by=by,
        rebuild_of=old.id,
    )
    session.add(build)
    session.flush()
    return build
