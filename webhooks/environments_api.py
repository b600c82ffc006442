"""Environments, promotion, approval, rollback and the audit log in the JSON API.

Every change here needs the admin role (``webhooks.auth`` refuses others' POST and PUT);
``GET /api/audit`` is for admins only. ``register`` also adds the audit trail of changes
made elsewhere in the API and pages (``webhooks.audit_trail``) and the pages.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify, request

from builder.accounts.audit import entry_to_dict, recent
from builder.deploys.deployments import deployment_to_dict
from builder.deploys.environments import environment_names, environment_to_dict, set_requires_approval
from builder.errors import InputError
from builder.ids import is_id
from builder.db.models import Deployment, OutboundDelivery
from builder.deploys.promotions import decide, promote, rollback
from webhooks.auth import current_user, require_admin
from webhooks.api import page_size
from webhooks.context import db, services

bp = Blueprint("environments_api", __name__, url_prefix="/api")


def actor() -> str:
    user = current_user()
    return user.name if user is not None else "unknown"


def started(created: list[Deployment], queued: list[OutboundDelivery]) -> Any:
    """Commit, hand the runnable deployments and the notifications to the broker; 202 with the deployments."""
    db().commit()
    services().start_deployments([d.id for d in created if d.state == "pending"])
    services().send_deliveries([d.id for d in queued])
    return jsonify({"deployments": [deployment_to_dict(d) for d in created]}), 202


def _object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InputError("expected a JSON object")
    return body


@bp.get("/environments")
def environments_index():  # type: ignore[no-untyped-def]
    session = db()
    return jsonify({"environments": [environment_to_dict(session, name) for name in environment_names(session)]})


@bp.put("/environments/<name>")
def environments_update(name: str):  # type: ignore[no-untyped-def]
    body = _object()
    unknown = sorted(set(body) - {"requires_approval"})
    if unknown:
        raise InputError(f"unknown fields: {', '.join(unknown)}")
    session = db()
    set_requires_approval(session, name, body.get("requires_approval"), actor())
    session.commit()
    return jsonify(environment_to_dict(session, name))


@bp.post("/environments/<name>/rollback")
def environments_rollback(name: str):  # type: ignore[no-untyped-def]
    return started(*rollback(db(), services().settings, name, _object(), actor()))


@bp.post("/deployments/<int:deployment_id>/promote")
def deployments_promote(deployment_id: int):  # type: ignore[no-untyped-def]
    return started(*promote(db(), services().settings, deployment_id, _object().get("environment"), actor()))


@bp.post("/deployments/<int:deployment_id>/approve")
def deployments_approve(deployment_id: int):  # type: ignore[no-untyped-def]
    deployment = decide(db(), deployment_id, True, actor())
    db().commit()
    services().start_deployments([deployment.id])
    return jsonify(deployment_to_dict(deployment))


@bp.post("/deployments/<int:deployment_id>/reject")
def deployments_reject(deployment_id: int):  # type: ignore[no-untyped-def]
    deployment = decide(db(), deployment_id, False, actor())
    db().commit()
    return jsonify(deployment_to_dict(deployment))


@bp.get("/audit")
def audit_index():  # type: ignore[no-untyped-def]
    require_admin()
    limit = page_size(100)
    before = int(request.args["before"]) if is_id(request.args.get("before")) else None
    entries = recent(db(), limit, before, request.args.get("action") or None)
    return jsonify({"audit": [entry_to_dict(e) for e in entries]})


def register(app: Flask) -> None:
    from webhooks import audit_trail, pages_environments  # noqa: F401  (the pages join the dashboard blueprint)

    app.register_blueprint(bp)
    audit_trail.register(app)


