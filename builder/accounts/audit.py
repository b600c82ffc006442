"""The audit log: who approved, rejected, promoted, rolled back, and changed triggers, rules, users, tokens.

``record`` adds an entry in the caller's transaction, so an entry exists exactly when
what it describes was committed. Actors are user names (API and pages), or
``cli:<os user>`` for the ``buildhook`` command.
"""

from __future__ import annotations

import getpass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.db.models import AuditEntry


def cli_actor() -> str:
    """Who runs the ``buildhook`` command: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container's random user)
        return "cli"


def record(session: Session, actor: str, action: str, subject: str | None = None, **details: Any) -> AuditEntry:
    entry = AuditEntry(actor=actor, action=action, subject=subject, details=details)
    session.add(entry)
    return entry


def recent(session: Session, limit: int = 100, before: int | None = None, action: str | None = None
           ) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(session.scalars(query))


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor, "action": entry.action,
            "subject": entry.subject, "details": entry.details or {}}
