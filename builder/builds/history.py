"""What the pages read: the filtered build history, a build's steps, its folded log, a trigger's deliveries.

The overview's numbers are in ``builder/builds/overview.py``.

No Flask here. Every query is bounded (a page of rows, a time window) and served by an
index: ``ix_builds_*`` (``0001``, ``0006``) for the history, ``ix_deliveries_*`` for a
trigger's recent deliveries. No ``COUNT(*)`` over the whole table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.builds.run.ansi import strip_ansi
from builder.errors import InputError
from builder.forges.registry import forge_for
from builder.forges.web_links import web_location
from builder.ids import is_id
from builder.db.models import Build, BuildLogLine, Delivery, Trigger
from builder.db.paging import split_page

ACTIVE_STATES = ("queued", "cloning", "building", "pushing")
KNOWN_STATES = ("queued", "cloning", "building", "pushing", "succeeded", "failed", "cancelled", "skipped",
                "superseded")
PAGE_SIZE = 50


def is_active(state: str) -> bool:
    return state in ACTIVE_STATES


# --- the history ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryFilter:
    trigger: int | None = None
    repository: str | None = None
    ref: str | None = None
    state: str | None = None
    since: date | None = None
    until: date | None = None
    pull_request: int | None = None

    @classmethod
    def from_args(cls, args: Any) -> "HistoryFilter":
        """From query parameters (a mapping of strings); bad values raise InputError."""
        def text(name: str) -> str | None:
            value = (args.get(name) or "").strip()
            return value or None

        trigger = text("trigger")
        if trigger is not None and not is_id(trigger):
            raise InputError("trigger must be a trigger id")
        state = text("state")
        if state is not None and state not in KNOWN_STATES:
            raise InputError(f"state must be one of {', '.join(KNOWN_STATES)}")
        pull_request = text("pull_request")
        if pull_request is not None and not is_id(pull_request):
            raise InputError("pull_request must be a pull or merge request number")
        return cls(trigger=int(trigger) if trigger else None, repository=text("repository"), ref=text("ref"),
                   state=state, since=_day(text("since"), "since"), until=_day(text("until"), "until"),
                   pull_request=int(pull_request) if pull_request else None)

    def as_args(self) -> dict[str, str]:
        """The query parameters that give this filter back (for links)."""
        shown = {"trigger": self.trigger, "repository": self.repository, "ref": self.ref, "state": self.state,
                 "since": self.since, "until": self.until, "pull_request": self.pull_request}
        return {key: str(value) for key, value in shown.items() if value is not None}

    @property
    def active(self) -> bool:
        return bool(self.as_args())

    def query(self) -> "BuildQuery":
        """The same selection as a ``BuildQuery``: ``since`` and ``until`` are whole UTC days."""
        return BuildQuery(trigger=self.trigger, repository=self.repository, ref=self.ref,
                          states=(self.state,) if self.state else (),
                          since=_start_of(self.since) if self.since else None,
                          until=_end_of(self.until) if self.until else None, pull_request=self.pull_request)


@dataclass(frozen=True)
class BuildQuery:
    """Which builds ``history`` reads: each field set narrows it; ``since`` and ``until`` are inclusive."""

    trigger: int | None = None
    repository: str | None = None
    ref: str | None = None  # a branch or tag name
    states: tuple[str, ...] = ()  # any of these
    since: datetime | None = None
    until: datetime | None = None
    pull_request: int | None = None  # a pull or merge request's number

    @classmethod
    def from_args(cls, args: Any) -> "BuildQuery":
        """From the API's query parameters (a Werkzeug MultiDict): ``state`` repeated or comma-separated,
        ``since`` / ``until`` ISO 8601 times (UTC without an offset; a date alone is that whole day)."""
        base = HistoryFilter.from_args({key: args.get(key) for key in ("trigger", "repository", "ref", "pull_request")})
        states = tuple(dict.fromkeys(part.strip() for raw in args.getlist("state") for part in raw.split(",")
                                     if part.strip()))
        unknown = [state for state in states if state not in KNOWN_STATES]
        if unknown:
            raise InputError(f"unknown state {unknown[0]!r}: state must be one or more of {', '.join(KNOWN_STATES)}")
        since, until = _time(args.get("since"), "since", end=False), _time(args.get("until"), "until", end=True)
        if since and until and since > until:
            raise InputError("since must not be after until")
        return cls(trigger=base.trigger, repository=base.repository, ref=base.ref, states=states, since=since,
                   until=until, pull_request=base.pull_request)


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{name} must be a date, YYYY-MM-DD") from None


def _time(value: str | None, name: str, end: bool) -> datetime | None:
    """An ISO 8601 time, in UTC; a date alone is its first (or, with ``end``, last) microsecond."""
    text = (value or "").strip()
    if not text:
        return None
    text = re.sub(r" (\d\d(?::?\d\d)?)$", r"+\1", text) if "T" in text else text  # an unescaped "+" in a URL
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return _end_of(day) if end else _start_of(day)
        found = datetime.fromisoformat(text)
        return found.replace(tzinfo=timezone.utc) if found.tzinfo is None else found.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: a time near year 1 or 9999 with an offset
        raise InputError(f"{name} must be an ISO 8601 time such as 2026-01-31T12:00:00Z, or a date") from None


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=timezone.utc)


def history(session: Session, filters: HistoryFilter | BuildQuery, before: int | None = None,
            limit: int = PAGE_SIZE) -> tuple[list[Build], int | None]:
    """One page of builds, newest first, and the cursor of the next (older) page or None.

    Ordered by id (the cursor); each filter has an index that starts with its column and
    ends with the id, so a page reads ``limit`` index entries whatever the table's size.
    """
    wanted = filters.query() if isinstance(filters, HistoryFilter) else filters
    query = select(Build).order_by(Build.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Build.id < before)
    if wanted.trigger is not None:
        query = query.where(Build.trigger_id == wanted.trigger)
    if wanted.repository is not None:
        query = query.where(Build.repository == wanted.repository)
    if wanted.ref is not None:
        query = query.where(Build.ref_name == wanted.ref)
    if wanted.pull_request is not None:
        query = query.where(Build.pull_request == wanted.pull_request)
    if len(wanted.states) == 1:
        query = query.where(Build.state == wanted.states[0])
    elif wanted.states:
        query = query.where(Build.state.in_(wanted.states))
    if wanted.since is not None:
        query = query.where(Build.created_at >= wanted.since)
    if wanted.until is not None:
        query = query.where(Build.created_at <= wanted.until)
    return split_page(list(session.scalars(query)), limit)


# --- links to the Git host ------------------------------------------------------------------

def repository_web_url(provider: str, clone_url: str) -> str | None:
    """``https://host/owner/repo`` for an http(s) or ssh clone URL; None for file:// and the unknown."""
    forge = forge_for(provider)
    if forge:
        return forge.repository_url(clone_url)
    location = web_location(clone_url)
    return location.url if location else None


def commit_url(provider: str, clone_url: str, sha: str) -> str | None:
    """The commit's page on its host, or None when the host is unknown (file://, a local path)."""
    forge = forge_for(provider)
    return forge.commit_url(clone_url, sha) if forge else None


# --- one build -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    started: datetime | None
    ended: datetime | None
    status: str  # "done" | "running" | "failed" | "waiting" | "skipped"

    @property
    def seconds(self) -> float | None:
        """How long it took, or has taken so far while it runs."""
        end = self.ended or (datetime.now(timezone.utc) if self.status == "running" else None)
        if self.started is None or end is None:
            return None
        return max(0.0, (end - self.started).total_seconds())


def build_steps(build: Build) -> list[Step]:
    """queued (created→started), cloning, building, pushing (→finished), each with its status."""
    marks = [("queued", build.created_at), ("cloning", build.cloning_at or build.started_at),
             ("building", build.building_at), ("pushing", build.pushing_at)]
    finished = build.finished_at
    active = is_active(build.state)
    steps: list[Step] = []
    for index, (name, start) in enumerate(marks):
        if start is None:
            steps.append(Step(name, None, None, "waiting" if active else "skipped"))
            continue
        following = [mark for _name, mark in marks[index + 1:] if mark is not None]
        if name == "queued":
            following = [build.started_at] if build.started_at else []
        end = following[0] if following else finished
        if end is None:
            status = "running" if active else "done"
        elif following:
            status = "done"
        else:  # the last step reached: it ended with the build
            status = {"failed": "failed", "cancelled": "cancelled"}.get(build.state, "done")
        steps.append(Step(name, start, end, status))
    return steps


# --- the log, folded -------------------------------------------------------------------------

# A step of the classic builder ("Step 2/4 : RUN ..."), or of BuildKit's plain progress ("#6 [2/4] RUN ...",
# "#9 [stage-1 2/3] COPY ..."); BuildKit runs independent stages at once, so its folds follow the headers.
STEP_START = re.compile(r"^(Step \d+/\d+ : |#\d+ \[[^\]]*\d+/\d+\] )")
PUSH_START = re.compile(r"^Pushing \S+")
FOLD_END = re.compile(
    r"^(Successfully built |Successfully tagged |Layer cache: |Built |Pushed |Building |Succeeded: |FAILED: |"
    r"Cancelled|Transient failure|A cancel request came)")
ERROR_LINE = re.compile(r"\bERROR\b|\bFAILED\b|returned a non-zero code|^error: |^fatal: ")


def is_error_line(text: str) -> bool:
    """Whether a line reports an error, read without its colour codes."""
    return bool(ERROR_LINE.search(strip_ansi(text)))


@dataclass
class LogGroup:
    """Lines outside any fold (``head`` None), or one docker step / push with its output."""

    head: BuildLogLine | None
    lines: list[BuildLogLine] = field(default_factory=list)

    @property
    def error(self) -> bool:
        return any(is_error_line(line.text) for line in ([self.head] if self.head else []) + self.lines)


def fold_log(lines: Iterable[BuildLogLine]) -> list[LogGroup]:
    """The same folding as static/app.js does for lines that arrive live."""
    groups: list[LogGroup] = []
    current: LogGroup | None = None
    for line in lines:
        text = strip_ansi(line.text)
        if STEP_START.match(text) or PUSH_START.match(text):
            current = LogGroup(head=line)
            groups.append(current)
            continue
        if current is not None and FOLD_END.match(text):
            current = None
        if current is None:
            if not groups or groups[-1].head is not None:
                groups.append(LogGroup(head=None))
            groups[-1].lines.append(line)
        else:
            current.lines.append(line)
    return groups


# --- a trigger's inbound deliveries ----------------------------------------------------------


def recent_deliveries(session: Session, trigger: Trigger, limit: int = 50,
                      before: int | None = None) -> list[Delivery]:
    """The trigger's deliveries and, like a host's "Recent deliveries", the ones for its repository
    that no trigger took (a wrong signature): two indexed queries, merged; ``before`` a delivery id."""
    older = [Delivery.id < before] if before is not None else []
    mine = session.scalars(select(Delivery).where(Delivery.trigger_id == trigger.id, *older)
                           .order_by(Delivery.id.desc()).limit(limit))
    unclaimed = session.scalars(
        select(Delivery).where(Delivery.provider == trigger.provider, Delivery.repository == trigger.repository,
                               Delivery.trigger_id.is_(None), *older)
        .order_by(Delivery.id.desc()).limit(limit))
    merged = {delivery.id: delivery for delivery in [*mine, *unclaimed]}
    return [merged[key] for key in sorted(merged, reverse=True)[:limit]]


def deliveries_page(session: Session, trigger: Trigger, before: int | None = None,
                    limit: int = PAGE_SIZE) -> tuple[list[Delivery], dict[int, list[int]], int | None]:
    """A page of ``recent_deliveries``, the builds each started (by delivery id), and the next cursor."""
    rows = recent_deliveries(session, trigger, limit + 1, before)
    page, next_cursor = split_page(rows, limit)
    return page, builds_started(session, page), next_cursor


def builds_started(session: Session, deliveries: list[Delivery]) -> dict[int, list[int]]:
    """The ids of the builds each delivery started, by delivery id (one query)."""
    started: dict[int, list[int]] = {row.id: [] for row in deliveries}
    if started:
        for delivery_id, build_id in session.execute(select(Build.delivery_id, Build.id).where(
                Build.delivery_id.in_(list(started))).order_by(Build.id)):
            started[delivery_id].append(build_id)
    return started


def inbound_delivery_to_dict(delivery: Delivery, builds: list[int]) -> dict[str, Any]:
    """An inbound webhook as the trigger page shows it (the API's ``InboundDelivery``)."""
    return {"id": delivery.id, "received_at": delivery.received_at.isoformat(), "provider": delivery.provider,
            "event": delivery.event, "delivery": delivery.delivery_id, "repository": delivery.repository,
            "trigger": delivery.trigger_id, "outcome": delivery.outcome, "reason": delivery.reason,
            "status_code": delivery.status_code, "builds": builds}
