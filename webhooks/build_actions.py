"""The buttons of a build in the API: cancel and rebuild (admins only, through webhooks/auth.py)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from builder.build_actions import cancel_build, rebuild
from builder.builds import build_to_dict
from builder.models import BuildState
from builder.outbox import dispatch
from webhooks.auth import current_user
from webhooks.context import db, services

bp = Blueprint("build_actions", __name__, url_prefix="/api")


@bp.post("/builds/<int:build_id>/cancel")
def builds_cancel(build_id: int):  # type: ignore[no-untyped-def]
    """202 with the build: "cancelled" if it was queued, else still running with "cancel_requested"."""
    ctx = services()
    session = db()
    user = current_user()
    build = cancel_build(session, build_id, by=user.name if user is not None else "unknown")
    session.commit()
    if build.state == BuildState.CANCELLED.value:  # it never ran: nobody else announces it
        ctx.report(build.id, BuildState.CANCELLED.value)
    return jsonify(build_to_dict(build)), 202


@bp.post("/builds/<int:build_id>/rebuild")
def builds_rebuild(build_id: int):  # type: ignore[no-untyped-def]
    """201 {"build": {...}}: a new queued build of the same commit, image and tags, sent to a worker."""
    ctx = services()
    session = db()
    build = rebuild(session, build_id, ctx.settings)
    session.commit()
    dispatch(ctx.sessions, ctx.send, [build.id], on_queued=ctx.report)
    return jsonify({"build": build_to_dict(build)}), 201
