"""Server-rendered pages: the build history, one build, and its live log (server-sent events).

The blueprint (``dashboard``) lives in ``webhooks/pages.py``; the trigger pages and the
deployments, deliveries and overview pages add their views to it from their own modules.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Iterator

from flask import Response, render_template, request
from sqlalchemy import select

from builder.builds.queries import get_build, log_lines
from builder.errors import InputError
from builder.ids import parse_id
from builder.builds.run.ansi import strip_ansi
from builder.builds.history import HistoryFilter, LogGroup, build_steps, fold_log, history as history_page, is_active
from builder.db.models import Build, Delivery, Deployment, OutboundDelivery, Trigger
from builder.registries.retention_records import image_removal
from webhooks.context import db, services
from webhooks.log_render import first_error_seq
from webhooks.pages import bp

STREAM_POLL_SECONDS = 0.3
STREAM_LIFETIME_SECONDS = 600  # then the browser reconnects with Last-Event-ID
STREAM_HEARTBEAT_SECONDS = 15
STREAM_BATCH = 500
# A live stream holds one of gunicorn's threads. Past this many per process, a stream sends what
# there is and ends; the browser reconnects after ``retry`` (2 s): polling, not a frozen app.
STREAM_MAX_HELD = 4
_held_streams = threading.BoundedSemaphore(STREAM_MAX_HELD)


def _cursor(name: str) -> int | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    return parse_id(raw, f"{name} must be a build id")


@bp.get("/")
def history():  # type: ignore[no-untyped-def]
    session = db()
    triggers = list(session.scalars(select(Trigger).order_by(Trigger.repository, Trigger.id)))
    error = None
    try:
        filters = HistoryFilter.from_args(request.args)
        before = _cursor("before")
    except InputError as exc:  # the message, the form as sent, and no builds: not every build under it
        filters, before, error = HistoryFilter(), None, str(exc)
    builds, next_cursor = history_page(session, filters, before=before) if error is None else ([], None)
    template = "_history_rows.html" if request.args.get("partial") == "rows" else "history.html"
    return render_template(template, builds=builds, next_cursor=next_cursor, filters=filters, before=before,
                           triggers=triggers, error=error), (400 if error else 200)


@bp.get("/builds/<int:build_id>")
def build_page(build_id: int):  # type: ignore[no-untyped-def]
    session = db()
    build = get_build(session, build_id)
    deployments = session.scalars(select(Deployment).where(Deployment.build_id == build_id).order_by(Deployment.id))
    deliveries = session.scalars(
        select(OutboundDelivery).where(OutboundDelivery.build_id == build_id).order_by(OutboundDelivery.id))
    lines = log_lines(session, build_id)
    query = (request.args.get("q") or "").strip()
    # ?q=: the lines that contain it (what the search box does in place when JavaScript runs)
    shown = [line for line in lines if query.lower() in strip_ansi(line.text).lower()] if query else lines
    return render_template("build.html", build=build, trigger=build.trigger, steps=build_steps(build),
                           groups=fold_log(shown) if not query else [LogGroup(head=None, lines=shown)],
                           line_count=len(lines), query=query, matches=len(shown),
                           first_error=first_error_seq(lines) if build.state == "failed" else None,
                           last_seq=lines[-1].seq if lines else 0, active=is_active(build.state),
                           deployments=list(deployments), deliveries=list(deliveries),
                           delivery=session.get(Delivery, build.delivery_id) if build.delivery_id else None,
                           removed=image_removal(session, build))


def _event(data: str, event: str | None = None, event_id: int | None = None) -> str:
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id is not None else "")
    body = "".join(f"data: {part}\n" for part in (data.replace("\r", "").split("\n") or [""]))
    return head + body + "\n"


@bp.get("/api/builds/<int:build_id>/log/stream")
def log_stream(build_id: int):  # type: ignore[no-untyped-def]
    """The build's log as server-sent events: each line ``id: <seq>``; ``event: state`` when the
    state changes; ``event: end`` once the build is finished and every line was sent.

    Resumes after ``Last-Event-ID`` (what EventSource sends when it reconnects) or ``?after=``.
    Polls the database every 0.3 s with a short session each time; a connection lives at most
    10 minutes (the browser then reconnects where it stopped), and past ``STREAM_MAX_HELD`` open
    streams in this process, only for one poll.
    """
    get_build(db(), build_id)  # 404 before the stream starts
    after = 0
    for raw in (request.headers.get("Last-Event-ID", ""), request.args.get("after", "")):
        raw = raw.strip()
        if raw:
            after = max(after, parse_id(raw, "Last-Event-ID and after must be a log line number"))
    sessions = services().sessions
    try:  # ?lifetime= may only shorten a connection (tests, proxies with short timeouts)
        lifetime = min(float(request.args.get("lifetime", STREAM_LIFETIME_SECONDS)), STREAM_LIFETIME_SECONDS)
    except ValueError:
        raise InputError("lifetime must be a number of seconds") from None

    def generate() -> Iterator[str]:
        held = _held_streams.acquire(blocking=False)
        try:
            yield "retry: 2000\n\n"
            yield from _follow(sessions, build_id, after, lifetime if held else 0.0)
        finally:
            if held:
                _held_streams.release()

    return Response(generate(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _follow(sessions, build_id: int, after: int, lifetime: float) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The events of one connection: lines after ``after``, state changes, the end."""
    seq = after
    sent_state = None
    deadline = time.monotonic() + lifetime
    quiet_since = time.monotonic()
    while True:
        with sessions() as session:
            state = session.scalar(select(Build.state).where(Build.id == build_id))
            lines = log_lines(session, build_id, after=seq, limit=STREAM_BATCH)
            rows = [(line.seq, line.text) for line in lines]
        if state is None:  # deleted meanwhile
            yield _event(json.dumps({"state": None}), event="end")
            return
        for number, text in rows:
            seq = number
            yield _event(text, event_id=number)
        if state != sent_state:
            sent_state = state
            yield _event(json.dumps({"state": state}), event="state")
        if not is_active(state) and not rows:  # same snapshot: every line is out
            yield _event(json.dumps({"state": state, "last": seq}), event="end")
            return
        if rows:
            quiet_since = time.monotonic()
            if len(rows) == STREAM_BATCH:
                continue
        elif time.monotonic() - quiet_since >= STREAM_HEARTBEAT_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        if time.monotonic() >= deadline:
            return
        time.sleep(STREAM_POLL_SECONDS)


from webhooks import page_actions, pages_inbound, pages_ops, pages_triggers  # noqa: E402,F401  (their views join the blueprint)
