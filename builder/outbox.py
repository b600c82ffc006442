"""The hand-off of queued builds to the broker, reliable across broker outages.

A build row is the outbox message: it is committed in state ``queued`` with
``dispatched_at`` unset, sent to the broker after the commit, then marked.
If the broker is down the row stays unmarked and ``relay_pending`` sends it
later. A build sent twice is harmless: a worker claims it atomically and a
second claim finds nothing to do.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable, Iterable

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from builder.models import Build, BuildState, Deployment, utcnow

log = logging.getLogger(__name__)

Send = Callable[[int], None]


def dispatch(
    sessions: sessionmaker[Session],
    send: Send,
    build_ids: Iterable[int],
    on_queued: Callable[[int, str], None] | None = None,
) -> list[int]:
    """Send each build to the broker; return the ids that could not be sent yet."""
    pending: list[int] = []
    for build_id in build_ids:
        if on_queued:
            on_queued(build_id, "queued")
        try:
            send(build_id)
        except Exception as exc:  # the broker is down: the relay will retry
            log.warning("build %s stays in the outbox: %s", build_id, exc)
            pending.append(build_id)
            continue
        with sessions() as session:
            session.execute(update(Build).where(Build.id == build_id).values(dispatched_at=utcnow()))
            session.commit()
    return pending


def relay_pending(
    sessions: sessionmaker[Session],
    send: Send,
    grace_seconds: int,
    redispatch_after_seconds: int = 600,
) -> int:
    """Send queued builds that were never sent (or whose message may be lost)."""
    now = utcnow()
    with sessions() as session:
        ids = list(
            session.scalars(
                select(Build.id)
                .where(
                    Build.state == BuildState.QUEUED.value,
                    Build.created_at < now - timedelta(seconds=grace_seconds),
                    or_(
                        Build.dispatched_at.is_(None),
                        Build.dispatched_at < now - timedelta(seconds=redispatch_after_seconds),
                    ),
                )
                .order_by(Build.id)
                .limit(500)
            )
        )
    failed = dispatch(sessions, send, ids)
    return len(ids) - len(failed)


def undispatched_deployments(sessions: sessionmaker[Session], grace_seconds: int,
                             redispatch_after_seconds: int = 600) -> list[int]:
    """Pending deployments to hand to the broker (again); marks them dispatched now."""
    now = utcnow()
    with sessions() as session:
        ids = list(session.scalars(
            select(Deployment.id).where(
                Deployment.state == "pending",
                Deployment.created_at < now - timedelta(seconds=grace_seconds),
                or_(Deployment.dispatched_at.is_(None),
                    Deployment.dispatched_at < now - timedelta(seconds=redispatch_after_seconds)))
            .order_by(Deployment.id).limit(200)))
        if ids:
            session.execute(update(Deployment).where(Deployment.id.in_(ids)).values(dispatched_at=now))
            session.commit()
    return ids
