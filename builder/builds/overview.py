"""The overview's numbers: builds per day, success rate, median build time and queue wait.

Computed in SQL over a bounded time window (``ix_builds_overview``, created_at first), never over the whole table.
No Flask here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from builder.db.models import Build

OVERVIEW_DAYS = 14


@dataclass(frozen=True)
class Day:
    day: date
    total: int
    by_state: dict[str, int]


@dataclass(frozen=True)
class Overview:
    days: list[Day]
    total: int
    succeeded: int
    failed: int
    success_rate: float | None  # succeeded / (succeeded + failed)
    median_build_seconds: float | None  # started -> finished, of succeeded and failed builds
    p90_build_seconds: float | None
    median_queue_seconds: float | None  # created -> started, of builds that started
    by_state: dict[str, int]
    since: datetime


def _epoch(session: Session, column: Any) -> Any:
    """Seconds since some origin, in SQL: differences of two are durations."""
    if session.get_bind().dialect.name == "sqlite":
        return func.julianday(column) * 86400.0
    return func.extract("epoch", column)


def _utc_day(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column)  # stored in UTC
    return func.date(func.timezone("UTC", column))


def _quantiles(session: Session, value: Any, where: list[Any], count: int,
               qs: tuple[float, ...]) -> list[float | None]:
    """Quantiles (interpolated; the median is 0.5) of ``value`` over ``count`` rows, sorted in SQL:
    each reads two values at an offset instead of sending every row to Python."""
    found: list[float | None] = []
    for q in qs:
        if not count:
            found.append(None)
            continue
        position = q * (count - 1)
        low = int(position)
        pair = [float(v) for v in session.scalars(select(value).where(*where).order_by(value).offset(low).limit(2))]
        if not pair:
            found.append(None)
            continue
        high = pair[1] if len(pair) > 1 else pair[0]
        # milliseconds: SQLite's julianday() is a double, exact to some 50 microseconds
        found.append(round(max(0.0, pair[0] + (high - pair[0]) * (position - low)), 3))
    return found


def overview(session: Session, now: datetime | None = None, days: int = OVERVIEW_DAYS) -> Overview:
    """Builds per day and state over the last ``days`` days (today included, UTC), the success
    rate, and the median build time and queue wait: aggregated and sorted in SQL, reading only
    ``ix_builds_overview`` (0006: the window's columns), so no build row is visited or sent here."""
    now = now or datetime.now(timezone.utc)
    first_day = now.astimezone(timezone.utc).date() - timedelta(days=days - 1)
    since = datetime.combine(first_day, time.min, tzinfo=timezone.utc)
    window = [Build.created_at >= since]
    day = _utc_day(session, Build.created_at)
    per_day: dict[date, dict[str, int]] = {first_day + timedelta(days=n): {} for n in range(days)}
    by_state: dict[str, int] = {}
    for raw_day, state, count in session.execute(
            select(day, Build.state, func.count()).where(*window).group_by(day, Build.state)):
        key = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day)[:10])
        counts = per_day.setdefault(key, {})
        counts[state] = counts.get(state, 0) + count
        by_state[state] = by_state.get(state, 0) + count
    ran = [*window, Build.state.in_(("succeeded", "failed")), Build.started_at.is_not(None),
           Build.finished_at.is_not(None)]
    started = [*window, Build.started_at.is_not(None)]
    ran_count, started_count = session.execute(select(
        func.count(Build.finished_at).filter(*ran[1:]), func.count(Build.started_at)).where(*window)).one()
    build_time = _epoch(session, Build.finished_at) - _epoch(session, Build.started_at)
    queue_wait = _epoch(session, Build.started_at) - _epoch(session, Build.created_at)
    median_build, p90_build = _quantiles(session, build_time, ran, ran_count or 0, (0.5, 0.9))
    [median_queue] = _quantiles(session, queue_wait, started, started_count or 0, (0.5,))
    succeeded, failed = by_state.get("succeeded", 0), by_state.get("failed", 0)
    return Overview(
        days=[Day(key, sum(counts.values()), counts) for key, counts in sorted(per_day.items())],
        total=sum(by_state.values()),
        succeeded=succeeded,
        failed=failed,
        success_rate=succeeded / (succeeded + failed) if succeeded + failed else None,
        median_build_seconds=median_build,
        p90_build_seconds=p90_build,
        median_queue_seconds=median_queue,
        by_state=by_state,
        since=since,
    )


def overview_to_dict(numbers: Overview) -> dict[str, Any]:
    """The overview page's numbers as JSON (the API's ``Overview``); durations in seconds."""
    return {
        "since": numbers.since.isoformat(),
        "days": [{"day": day.day.isoformat(), "total": day.total, "by_state": day.by_state} for day in numbers.days],
        "total": numbers.total,
        "succeeded": numbers.succeeded,
        "failed": numbers.failed,
        "success_rate": numbers.success_rate,
        "median_build_seconds": numbers.median_build_seconds,
        "p90_build_seconds": numbers.p90_build_seconds,
        "median_queue_seconds": numbers.median_queue_seconds,
        "by_state": numbers.by_state,
    }
