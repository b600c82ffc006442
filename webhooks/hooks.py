"""Inbound Git host webhooks: verify, parse, record, enqueue, answer."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from builder.errors import NotFound
from builder.intake import receive_hook
from builder.outbox import dispatch
from builder.providers import PROVIDERS
from webhooks.context import services

bp = Blueprint("hooks", __name__)


@bp.post("/hooks/<provider>")
def receive(provider: str):  # type: ignore[no-untyped-def]
    module = PROVIDERS.get(provider)
    if module is None:
        raise NotFound(f"unknown provider {provider!r}")
    ctx = services()
    # Read one byte past the limit, so an oversized body is recorded as such.
    body = request.stream.read(ctx.settings.max_body_bytes + 1)
    result = receive_hook(ctx.sessions, module, request.headers, body, ctx.settings, ctx.box)
    dispatch(ctx.sessions, ctx.send, result.build_ids, on_queued=ctx.report)
    return jsonify(result.as_json()), result.status
