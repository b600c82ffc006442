"""The sign-in backoff, per account name and per client address, kept in the database
(``login_failures``) so every web worker and process sees the same counts, on SQLite and
PostgreSQL alike.

Every attempt is counted as a failure before the password is checked, in a transaction that
holds the two rows, so parallel guesses cannot slip past the count; a successful sign-in then
clears its account's count and takes the attempt back from its address's. After
``FREE_FAILURES`` failures (5 for an account name, whether or not it exists; 20 for an address,
which may be shared by many people) each further attempt must wait: 15 s, then twice as long
after every failure, at most 15 minutes. Counts older than ``FORGET_AFTER`` start over.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from builder.db.models import LoginFailure, utcnow

FREE_FAILURES = {"account": 5, "address": 20}
FIRST_WAIT = timedelta(seconds=15)
MAX_WAIT = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)
_SUBJECT_LENGTH = 255
_INSERT = {name: dialect.insert(LoginFailure.__table__).on_conflict_do_nothing()
           for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))}


def wait_after(failures: int, free: int) -> timedelta:
    """How long the next attempt must wait after ``failures`` failures: none before ``free``."""
    if failures < free:
        return timedelta(0)
    return min(MAX_WAIT, FIRST_WAIT * 2 ** min(failures - free, 16))


def _held_for(row: LoginFailure, now: datetime) -> float:
    """Seconds until ``row`` lets an attempt through again (0 or less: now)."""
    if row.last_failure_at <= now - FORGET_AFTER:
        return 0.0
    until = row.last_failure_at + wait_after(row.failures, FREE_FAILURES[row.kind])
    return (until - now).total_seconds()


def _keys(name: str, address: str) -> list[tuple[str, str]]:
    return [("account", name[:_SUBJECT_LENGTH]), ("address", address[:_SUBJECT_LENGTH])]


def claim_attempt(session: Session, name: str, address: str, now: datetime | None = None) -> int | None:
    """Count a sign-in attempt to ``name`` from ``address`` as a failure, unless either must wait.

    Returns None when the attempt may go on (the caller commits, then checks the password), or
    the seconds to wait (for ``Retry-After``; nothing was counted: the caller rolls back)."""
    now = now or utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.last_failure_at <= now - FORGET_AFTER))
    keys = _keys(name, address)
    insert = _INSERT[session.get_bind().dialect.name]
    session.execute(insert, [{"kind": kind, "subject": subject, "failures": 0, "last_failure_at": now}
                             for kind, subject in keys])
    rows = [session.get(LoginFailure, key, with_for_update=True, populate_existing=True) for key in sorted(keys)]
    held = max(_held_for(row, now) for row in rows if row is not None)
    if held > 0:
        return max(1, math.ceil(held))
    for row in rows:
        if row is not None:
            row.failures += 1
            row.last_failure_at = now
    session.flush()
    return None


def sign_in_succeeded(session: Session, name: str, address: str) -> None:
    """The password was right: the account's count starts over, and the address gets this
    attempt back (the caller commits)."""
    forget_account(session, name)
    _, (kind, subject) = _keys(name, address)
    session.execute(update(LoginFailure).where(LoginFailure.kind == kind, LoginFailure.subject == subject,
                                               LoginFailure.failures > 0)
                    .values(failures=LoginFailure.failures - 1))


def forget_account(session: Session, name: str) -> None:
    """Clear the failed sign-ins to ``name`` (a success, or an admin setting a new password)."""
    (kind, subject), _ = _keys(name, "")
    session.execute(delete(LoginFailure).where(LoginFailure.kind == kind, LoginFailure.subject == subject))
