"""Fair sharing: a trigger's ``max_concurrent`` builds at once, the rest wait ``queued`` in order.

The rule is one SQL condition (``admissible``): a queued build may start when the builds of its
trigger that are running, plus those queued before it (lower id), are fewer than the trigger's
``max_concurrent``. The claim (``builder.builds.run.pipeline.claim``) and the relay (``relay_pending``) both
use it. Whether a build is admissible never depends on another build's claim: starting an older
build moves it from "queued before" to "running", the same count for every younger build, so
concurrent claims on any database cannot pass the limit, without a lock.

A worker handed a build that is not admissible does not hold on to it: the claim fails, the task
ends at once and ``release`` marks it handed back (``dispatched_at`` = ``RELEASED``, the epoch: older
than any send, so the relay sends it again once it is admissible; the late mark of the send that
brought it, ``DispatchMarks`` writing a moment after the worker, leaves it so). When a build of a
limited trigger ends, its task sends the builds that became admissible (``next_waiting``); the relay sends the
released ones too, on its next pass, once they are admissible.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased, object_session, sessionmaker

from builder.builds.run.stops import RUNNING
from builder.errors import InputError
from builder.db.models import Build, BuildState, Trigger

MAX_CONCURRENT_MAX = 1000
API_REFUSAL = f"max_concurrent must be a whole number from 1 to {MAX_CONCURRENT_MAX}, or null for no limit"
FORM_REFUSAL = f"max_concurrent must be a whole number from 1 to {MAX_CONCURRENT_MAX} (empty: no limit)"
# ``dispatched_at`` of a build a worker handed back: sent once, due for the relay as soon as it may start.
RELEASED = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _limit_of_build() -> Any:
    return select(Trigger.max_concurrent).where(Trigger.id == Build.trigger_id).correlate(Build).scalar_subquery()


def admissible() -> ColumnElement[bool]:
    """True for a (queued) ``Build`` row its trigger's ``max_concurrent`` lets start now."""
    other = aliased(Build)
    limit = _limit_of_build()
    ahead = (select(func.count()).select_from(other)
             .where(other.trigger_id == Build.trigger_id,
                    or_(other.state.in_(RUNNING),
                        and_(other.state == BuildState.QUEUED.value, other.id < Build.id)))
             .correlate(Build).scalar_subquery())
    return or_(Build.trigger_id.is_(None), limit.is_(None), ahead < limit)


def release(sessions: sessionmaker[Session], build_id: int) -> bool:
    """A worker was handed a build it may not start: mark it handed back, so it is sent again once it may
    (a limit raised, a build ahead cancelled or finished)."""
    with sessions() as session:
        result = session.execute(update(Build)
                                 .where(Build.id == build_id, Build.state == BuildState.QUEUED.value)
                                 .values(dispatched_at=RELEASED))
        session.commit()
        return result.rowcount == 1


def next_waiting(sessions: sessionmaker[Session], build_id: int) -> list[int]:
    """After build ``build_id`` ended: the queued builds of its trigger that may start now, when the
    trigger has a limit (sent whether or not they were sent before: a copy claims nothing)."""
    with sessions() as session:
        trigger_id = session.scalar(select(Build.trigger_id).where(Build.id == build_id))
        if trigger_id is None or session.scalar(select(Trigger.max_concurrent)
                                                .where(Trigger.id == trigger_id)) is None:
            return []
        return list(session.scalars(select(Build.id).where(
            Build.trigger_id == trigger_id, Build.state == BuildState.QUEUED.value, admissible())
            .order_by(Build.id).limit(MAX_CONCURRENT_MAX)))


def queue_position(build: Build) -> dict[str, Any] | None:
    """Why a queued build waits and how many are ahead of it; None unless it is queued.

    Held back by its trigger's limit (``admissible`` false): the builds of its trigger queued before
    it ("1 ahead; trigger limit 1 (1 running)"); else it waits for a free worker, behind every build
    queued before it ("5 ahead; waiting for a worker"). ``limit`` and ``running`` describe its
    trigger either way (None without a limit).
    """
    session = object_session(build)
    if build.state != BuildState.QUEUED.value or session is None:
        return None
    limit = build.trigger.max_concurrent if build.trigger is not None else None
    older = select(func.count()).select_from(Build).where(Build.state == BuildState.QUEUED.value,
                                                          Build.id < build.id)
    running = None
    if limit is not None:
        ahead = session.scalar(older.where(Build.trigger_id == build.trigger_id)) or 0
        running = session.scalar(select(func.count()).select_from(Build).where(
            Build.trigger_id == build.trigger_id, Build.state.in_(RUNNING))) or 0
        if running + ahead >= limit:
            return {"ahead": ahead, "limit": limit, "running": running,
                    "text": f"{ahead} ahead; trigger limit {limit} ({running} running)"}
    ahead = session.scalar(older) or 0
    return {"ahead": ahead, "limit": limit, "running": running, "text": f"{ahead} ahead; waiting for a worker"}


def check_max_concurrent(value: Any, refusal: str = API_REFUSAL) -> int | None:
    """A trigger's ``max_concurrent``: 1 to 1000 builds, or None for no limit but the workers'.
    ``refusal``: the error for another value (a form says how to ask for no limit there)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CONCURRENT_MAX:
        raise InputError(refusal)
    return value
