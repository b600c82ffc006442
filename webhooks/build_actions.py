"""The buttons of a build in the API: cancel and rebuild (admins only, through webhooks/auth.py).

``cancel_and_announce`` and ``rebuild_and_dispatch`` are shared with the pages' forms
(``webhooks/page_actions.py``), which answer the same actions with a redirect.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from builder.builds.actions import cancel, rebuild
from builder.builds.queries import build_to_dict
from builder.db.models import Build, BuildState
from builder.metrics import count_build_end
from webhooks.auth import current_user
from webhooks.context import db, services

bp = Blueprint("build_actions", __name__, url_prefix="/api")


def _who() -> str:
    user = current_user()
    return user.name if user is not None else "unknown"


def cancel_and_announce(build_id: int) -> Build:
    """Cancel (or ask the worker to stop) the build, commit, and count and announce a cancel that is final."""
    ctx = services()
    session = db()
    cancellation = cancel(session, build_id, by=_who())
    build = cancellation.build
    trigger_id = build.trigger_id
    session.commit()
    if cancellation.ended:  # it was queued: no worker counts or announces it
        count_build_end(BuildState.CANCELLED.value, trigger_id)
        ctx.report(build.id, BuildState.CANCELLED.value)
    return build


def rebuild_and_dispatch(build_id: int) -> Build:
    """A new queued build like ``build_id``, started by the signed-in person, committed and sent."""
    ctx = services()
    session = db()
    build = rebuild(session, build_id, ctx.settings, by=_who())
    session.commit()
    ctx.start_builds([build.id])
    return build


@bp.post("/builds/<int:build_id>/cancel")
def builds_cancel(build_id: int):  # type: ignore[no-untyped-def]
    """202 with the build: "cancelled" if it was queued, else still running with "cancel_requested"."""
    return jsonify(build_to_dict(cancel_and_announce(build_id))), 202


@bp.post("/builds/<int:build_id>/rebuild")
def builds_rebuild(build_id: int):  # type: ignore[no-untyped-def]
    """201 {"build": {...}}: a new queued build of the same commit, image and tags, sent to a worker."""
    return jsonify({"build": build_to_dict(rebuild_and_dispatch(build_id))}), 201
