"""Inbound registry notifications: authenticate, parse, record, enqueue deployments, answer."""

from __future__ import annotations

import hmac

from flask import Blueprint, jsonify, request

from builder.deploys.deployments import receive_registry_events
from builder.errors import BadSignature, NotFound, PayloadTooLarge
from builder.registries import PARSERS
from webhooks.context import services

bp = Blueprint("registry", __name__)


def _authenticate(expected: str | None) -> None:
    """A bearer token (the registry endpoint's configured header) or ``?token=`` for hosts that send no headers."""
    if not expected:
        raise BadSignature("registry notifications are refused: BUILDHOOK_REGISTRY_EVENTS_TOKEN is not set")
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.args.get("token", "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise BadSignature("missing or wrong registry notification token")


def _receive(source: str):  # type: ignore[no-untyped-def]
    ctx = services()
    # The size first, as on /hooks/: an oversized body is a 413 whoever sends it.
    body = request.stream.read(ctx.settings.max_body_bytes + 1)
    if len(body) > ctx.settings.max_body_bytes:
        raise PayloadTooLarge(f"body is larger than {ctx.settings.max_body_bytes} bytes")
    _authenticate(ctx.settings.registry_events_token)
    events = PARSERS[source].parse(request.headers, body)
    result = receive_registry_events(ctx.sessions, source, events, ctx.settings)
    ctx.start_deployments(result.deployments)
    ctx.send_deliveries(result.deliveries)
    return jsonify(result.as_json()), 202


@bp.post("/registry/events")
def distribution_events():  # type: ignore[no-untyped-def]
    return _receive("distribution")


@bp.post("/registry/hooks/<source>")
def other_registry(source: str):  # type: ignore[no-untyped-def]
    if source not in PARSERS or source == "distribution":
        raise NotFound(f"unknown registry {source!r}; known: dockerhub, quay, harbor, acr")
    return _receive(source)
