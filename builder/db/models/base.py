"""The declarative base and the UTC datetime column type every model uses.

Typed SQLAlchemy 2.0 models. The schema itself is owned by the Alembic
migrations in ``builder/db/migrations``; keep the two in step.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    DateTime,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        # PostgreSQL answers in the session's time zone (the server's TimeZone): back to UTC.
        return value.astimezone(timezone.utc) if value is not None else None


# For tables whose ids people and other systems keep (URLs, badges, metrics labels, the audit log): SQLite
# otherwise gives a deleted row's id to the next row when it was the highest (PostgreSQL never reuses them).
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    pass
