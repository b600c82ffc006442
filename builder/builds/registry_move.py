"""Unfinished builds follow their registry when it moves (``buildhook serve``'s private registry
goes to a free port when another program took its own): queued builds are named, and pushed, at
its new address instead of an address that now belongs to someone else."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from builder.builds.commit_order import ACTIVE
from builder.db.engine import write_lock
from builder.db.models import Build


def follow_registry(sessions: sessionmaker[Session], old: str, new: str) -> int:
    """Builds not finished yet whose image is in registry ``old`` (``host:port``) name it in ``new``;
    returns how many. A build that is under way when its worker is stopped is queued again by the
    reaper with the image named here."""
    prefix = f"{old}/"
    with sessions() as session, write_lock(session):
        builds = session.scalars(select(Build).where(Build.state.in_(ACTIVE),
                                                     Build.image.startswith(prefix, autoescape=True))).all()
        for build in builds:
            build.image = f"{new}/{build.image.removeprefix(prefix)}"
        session.commit()
    return len(builds)
