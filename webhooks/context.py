"""Per-request access to the app's services and the request's one session."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from webhooks import Services


def services() -> Services:
    return current_app.extensions["buildhook"]


def db() -> Session:
    """The request's session, closed when the request ends."""
    if "db" not in g:
        g.db = services().sessions()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
