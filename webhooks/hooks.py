"""Inbound Git host webhooks: verify, parse, record, enqueue, answer."""

from __future__ import annotations

import threading

from flask import Blueprint, Flask, current_app, jsonify, request

from builder.errors import NotFound
from builder.intake import receive_hook
from builder.outbox import DispatchMarks, dispatch
from builder.providers import PROVIDERS
from webhooks import Services
from webhooks.context import services

bp = Blueprint("hooks", __name__)

_MARKS_KEY = "buildhook.dispatch_marks"
_marks_lock = threading.Lock()


def dispatch_marks(app: Flask, ctx: Services) -> DispatchMarks:
    """This app's batched ``dispatched_at`` writer (made on first use, so after a fork)."""
    marks = app.extensions.get(_MARKS_KEY)
    if marks is None:
        with _marks_lock:
            marks = app.extensions.get(_MARKS_KEY)
            if marks is None:
                marks = app.extensions[_MARKS_KEY] = DispatchMarks(ctx.sessions)
    return marks


@bp.post("/hooks/<provider>")
def receive(provider: str):  # type: ignore[no-untyped-def]
    module = PROVIDERS.get(provider)
    if module is None:
        raise NotFound(f"unknown provider {provider!r}")
    ctx = services()
    # Read one byte past the limit, so an oversized body is recorded as such.
    body = request.stream.read(ctx.settings.max_body_bytes + 1)
    result = receive_hook(ctx.sessions, module, request.headers, body, ctx.settings, ctx.box)
    if result.build_ids:
        # Stored and committed: now hand the builds to the broker. "queued" is announced only
        # for builds someone listens to; the dispatched_at marks are written in batches.
        announce = set(result.announce)

        def on_queued(build_id: int, state: str) -> None:
            if build_id in announce:
                ctx.report(build_id, state)

        dispatch(ctx.sessions, ctx.send, result.build_ids, on_queued=on_queued,
                 mark=dispatch_marks(current_app._get_current_object(), ctx).add)  # type: ignore[attr-defined]
    return jsonify(result.as_json()), result.status
