"""Users (hashed passwords, roles) and API tokens (shown once, stored hashed, revocable)."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from builder.errors import Conflict, InputError, NotFound
from builder.models import ApiToken, User, utcnow

ROLES = ("admin", "viewer")
TOKEN_PREFIX = "bh_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def add_user(session: Session, name: str, password: str, role: str) -> User:
    if not _NAME.fullmatch(name):
        raise InputError("user names are 1-64 letters, digits, and _ . @ -")
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise InputError("passwords need at least 8 characters")
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


def user_for_token(session: Session, token: str) -> User | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token),
                                                ApiToken.revoked_at.is_(None)))
    if row is None:
        return None
    row.last_used_at = utcnow()
    return row.user


def revoke_token(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    row.revoked_at = row.revoked_at or utcnow()
    return row
