"""Inbound Git host webhooks: verify, parse, record, enqueue, answer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, Flask, current_app, jsonify, request

from builder.db.models import BuildState
from builder.errors import NotFound
from builder.db.group_commit import GroupCommit
from builder.intake.receive import HookRejected, receive_hook
from builder.metrics import WEBHOOK_DELIVERIES, count_build_end
from builder.builds.dispatcher import Dispatcher
from builder.builds.outbox import DispatchMarks
from builder.forges.registry import forge_for
from webhooks import Services
from webhooks.context import services

bp = Blueprint("hooks", __name__)

_MARKS_KEY = "buildhook.dispatch_marks"
_GROUP_COMMIT_KEY = "buildhook.group_commit"
_DISPATCHER_KEY = "buildhook.dispatcher"
_per_app_lock = threading.RLock()  # a maker may ask for another per-app object
T = TypeVar("T")


def _per_app(app: Flask, key: str, make: Callable[[], T]) -> T:
    """The app's one ``key`` object, made on first use (so after a fork, in each worker)."""
    found = app.extensions.get(key)
    if found is None:
        with _per_app_lock:
            found = app.extensions.get(key)
            if found is None:
                found = app.extensions[key] = make()
    return found  # type: ignore[no-any-return]


def dispatch_marks(app: Flask, ctx: Services) -> DispatchMarks:
    """This app's batched ``dispatched_at`` writer."""
    return _per_app(app, _MARKS_KEY, lambda: DispatchMarks(ctx.sessions))


def dispatcher(app: Flask, ctx: Services) -> Dispatcher:
    """This app's sender of accepted builds to the broker, from a background thread."""
    return _per_app(app, _DISPATCHER_KEY, lambda: Dispatcher(ctx.sessions, ctx.send, dispatch_marks(app, ctx).add))


def group_commit(app: Flask, ctx: Services) -> GroupCommit:
    """This app's writer of accepted deliveries, a transaction per batch."""
    return _per_app(app, _GROUP_COMMIT_KEY, lambda: GroupCommit(ctx.sessions))


@bp.post("/hooks/<provider>")
def receive(provider: str):  # type: ignore[no-untyped-def]
    forge = forge_for(provider)
    if forge is None:
        raise NotFound(f"unknown provider {provider!r}")
    ctx = services()
    # Read one byte past the limit, so an oversized body is recorded as such.
    body = request.stream.read(ctx.settings.max_body_bytes + 1)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        result = receive_hook(ctx.sessions, forge, request.headers, body, ctx.settings, ctx.box,
                              commit=group_commit(app, ctx).commit)
    except HookRejected:
        WEBHOOK_DELIVERIES.labels(provider=provider, outcome="rejected").inc()
        raise
    WEBHOOK_DELIVERIES.labels(provider=provider, outcome=result.outcome).inc()
    for trigger_id, superseded in result.superseded.items():
        count_build_end(BuildState.SUPERSEDED.value, trigger_id, superseded)
    if result.build_ids:
        # Stored and committed: "queued" is announced for the builds someone listens to, then
        # the builds go to the broker from the dispatcher's thread (those still queued by then).
        for build_id in result.announce:
            ctx.report(build_id, "queued")
        dispatcher(app, ctx).add(result.build_ids)
    return jsonify(result.as_json()), result.status
