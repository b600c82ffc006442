"""Schedules: a trigger's ``schedule`` (cron, UTC) rebuilds its default branch's tip when due.

The expression is parsed by ``cronsim`` (five fields: minute hour day-of-month month day-of-week,
as crontab(5)) when the trigger is made or edited, and the next due time stored in
``triggers.schedule_next_at``. Each pass of every worker's relay runs ``run_due_schedules``: a
trigger whose due time has come is claimed with one conditional UPDATE that moves
``schedule_next_at`` from the due time it read to the next one; only the worker whose UPDATE
changed the row runs it, so a due time fires once however many workers there are. Missed due
times (every worker was down) fire once, not once each.

A scheduled run resolves the default branch's tip (``git ls-remote``) and plans the builds as a
push of it would, each marked with ``scheduled_for`` (the due time); a rule without
``"rebuild": "always"`` skips a commit it already built successfully, with the reason in the run's
delivery (event ``schedule``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from cronsim import CronSim, CronSimError

from builder.errors import InputError
from builder.forges.request import shown

SCHEDULE_CHARS = 255  # the ``triggers.schedule`` column


def check_schedule(expression: object) -> str | None:
    """A trigger's schedule: five cron fields in UTC (e.g. ``"0 3 * * 1"``), or None for none."""
    if expression is None or expression == "":
        return None
    if not isinstance(expression, str):
        raise InputError("schedule must be a cron expression (a string), or null for none")
    text = " ".join(expression.split())
    if len(text) > SCHEDULE_CHARS:
        raise InputError(f"schedule {shown(expression)} is longer than {SCHEDULE_CHARS} characters")
    if len(text.split(" ")) != 5:
        raise InputError(f"schedule {expression!r} must have five fields: minute hour day-of-month month "
                         "day-of-week (UTC), e.g. \"0 3 * * 1\"")
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise InputError(f"schedule {expression!r} is not a valid cron expression: {exc}") from None
    return text


def next_due(expression: str, after: datetime) -> datetime:
    """The first due time of ``expression`` strictly after ``after`` (UTC)."""
    return next(CronSim(expression, after.astimezone(timezone.utc).replace(tzinfo=None))).replace(tzinfo=timezone.utc)
