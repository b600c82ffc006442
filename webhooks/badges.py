"""``GET /badge/<trigger>.svg?branch=main``: a README's build status badge (``builder/builds/badges.py``).

Open to anyone when the trigger's ``public_badge`` is set; otherwise it needs a signed-in user
or an API token, and anyone else gets 404, as for a trigger that does not exist, so a private
trigger's existence is not disclosed (``webhooks/auth.py``).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request
from sqlalchemy.orm import Session

from builder.builds.badges import badge_markdown, badge_state, badge_svg
from builder.db.models import Trigger
from webhooks.context import db, services

bp = Blueprint("badges", __name__)


def public_badge(session: Session, trigger_id: int) -> bool:
    """Whether ``/badge/<trigger_id>.svg`` answers without sign-in."""
    trigger = session.get(Trigger, trigger_id)
    return trigger is not None and trigger.public_badge


@bp.get("/badge/<int:trigger_id>.svg")
def badge(trigger_id: int):  # type: ignore[no-untyped-def]
    trigger = db().get(Trigger, trigger_id)
    if trigger is None:
        abort(404, "no such badge")
    branch = request.args.get("branch") or trigger.default_branch
    svg = badge_svg(badge_state(db(), trigger, branch), branch)
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "no-cache"})


@bp.app_template_global("badge_markdown")
def trigger_badge_markdown(trigger: Trigger) -> str:
    """The trigger page's README snippet, with this site's public URL."""
    return badge_markdown(services().settings.public_url, trigger)
