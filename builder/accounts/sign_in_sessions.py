"""Server-side sign-in sessions: the browser's cookie carries a random token, the ``sessions``
table its SHA-256 hash, the user and when it expires (``BUILDHOOK_SESSION_LIFETIME`` after
sign-in). A session works only while its row exists and has not expired, so deleting the row
ends it at once, whoever holds a copy of the cookie: signing out deletes one row, a new
password or the user's removal all of theirs (``builder.accounts.users.end_sessions``)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from builder.db.models import SignInSession, User, utcnow

LAST_SEEN_EVERY = timedelta(minutes=1)  # like API tokens: reading pages need not write the database


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User, lifetime: timedelta, now: datetime | None = None) -> str:
    """A new session for ``user``; returns its token, for the cookie only (the caller commits).
    Expired sessions of anyone are cleared out on the way."""
    now = now or utcnow()
    session.execute(delete(SignInSession).where(SignInSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(SignInSession(token_hash=_digest(token), user_id=user.id, created_at=now,
                              expires_at=now + lifetime, last_seen_at=now))
    session.flush()
    return token


def session_user(session: Session, token: str, now: datetime | None = None) -> tuple[User | None, bool]:
    """The user whose live session ``token`` is (None: ended, expired or never was), and whether
    ``last_seen_at`` moved (at most once a minute; the caller then commits)."""
    now = now or utcnow()
    row = session.scalar(select(SignInSession).where(SignInSession.token_hash == _digest(token)))
    if row is None or row.expires_at <= now:
        return None, False
    if now - row.last_seen_at < LAST_SEEN_EVERY:
        return row.user, False
    row.last_seen_at = now
    return row.user, True


def end_session(session: Session, token: str) -> None:
    """Sign out: the session of ``token`` is gone, and a copy of its cookie with it."""
    session.execute(delete(SignInSession).where(SignInSession.token_hash == _digest(token)))
