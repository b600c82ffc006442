"""Users (hashed passwords, roles) and API tokens (shown once, stored hashed, revocable).
Sign-in sessions are in ``builder/accounts/sign_in_sessions.py``, the sign-in backoff in
``builder/accounts/sign_in_throttle.py``."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from builder.errors import Conflict, InputError, NotFound
from builder.db.models import ApiToken, SignInSession, User, utcnow
from builder.accounts.passwords import check_password
from builder.accounts.sign_in_throttle import forget_account

ROLES = ("admin", "viewer")
TOKEN_PREFIX = "bh_"
LAST_USED_EVERY = timedelta(minutes=1)  # how stale a token's last_used_at may get: reads need not write
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def add_user(session: Session, name: str, password: str, role: str) -> User:
    if not _NAME.fullmatch(name):
        raise InputError("user names are 1-64 letters, digits, and _ . @ -")
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}")
    check_password(password, name)
    user = User(name=name, password_hash=generate_password_hash(password), role=role)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"user {name!r} exists already") from None
    return user


def authenticate(session: Session, name: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        check_password_hash(generate_password_hash("timing"), password)  # same work either way
        return None
    return user if check_password_hash(user.password_hash, password) else None


def set_password(session: Session, name: str, password: str) -> User:
    """A new password for ``name``, checked like a new user's: every session of theirs ends, and
    the backoff of failed sign-ins to their name starts over. Their API tokens stay valid."""
    user = get_user(session, name)
    check_password(password, name)
    user.password_hash = generate_password_hash(password)
    end_sessions(session, user.id)
    forget_account(session, name)
    session.flush()
    return user


def end_sessions(session: Session, user_id: int) -> None:
    """End every sign-in session of the user at once (their cookies stop working)."""
    session.execute(delete(SignInSession).where(SignInSession.user_id == user_id))


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"user {name!r} not found")
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row, and the token itself (never stored, shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=_digest(token), prefix=token[:10])
    session.add(row)
    session.flush()
    return row, token


def find_token(session: Session, token: str) -> ApiToken | None:
    """The unrevoked token row of ``token``, or None."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token),
                                                 ApiToken.revoked_at.is_(None)))


def note_token_use(row: ApiToken, now: datetime | None = None) -> bool:
    """Move ``last_used_at`` to now when it is older than ``LAST_USED_EVERY``; True if it moved
    (the caller commits). Most requests change nothing, so reading the API writes nothing."""
    now = now or utcnow()
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_EVERY:
        return False
    row.last_used_at = now
    return True


def revoke_token(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    row.revoked_at = row.revoked_at or utcnow()
    return row


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def delete_user(session: Session, name: str, acting: User | None) -> None:
    """Delete a user and, with it, their tokens and sessions.
    Refused for yourself (``acting``; None from the command line) and for the last admin, so there
    is always someone to sign in as admin."""
    user = get_user(session, name)
    if acting is not None and user.id == acting.id:
        raise Conflict("you cannot delete yourself: ask another admin")
    if user.role == "admin" and session.scalar(select(func.count()).select_from(User).where(User.role == "admin")) <= 1:
        raise Conflict("the last admin cannot be deleted")
    for row in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)):
        session.delete(row)
    end_sessions(session, user.id)
    session.delete(user)
    session.flush()


def list_tokens(session: Session, user: User | None = None) -> list[ApiToken]:
    """Every token (``user`` None), or one user's, oldest first."""
    query = select(ApiToken).order_by(ApiToken.id)
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(session.scalars(query))


def user_to_dict(user: User) -> dict[str, Any]:
    """What the API shows of a user: never the password hash."""
    return {"id": user.id, "name": user.name, "role": user.role, "created_at": user.created_at.isoformat()}


def token_to_dict(row: ApiToken) -> dict[str, Any]:
    """What the API shows of a token: its first characters to recognise it, never the token or its hash."""
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"id": row.id, "user": row.user.name, "prefix": row.prefix, "created_at": row.created_at.isoformat(),
            "last_used_at": iso(row.last_used_at), "revoked_at": iso(row.revoked_at),
            "active": row.revoked_at is None}
