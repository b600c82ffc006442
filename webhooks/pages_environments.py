"""The environments page (side by side, what runs, what waits for approval, history) and the audit page.

Approve and Reject are plain forms with the CSRF token, posted here; the answer is the page again.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for

from builder.accounts.audit import recent
from builder.deploys.environments import environment_names, environment_to_dict, history
from builder.deploys.promotions import decide
from webhooks.auth import current_user, require_admin
from webhooks.context import db, services
from webhooks.pages import bp


@bp.get("/environments")
def environments():  # type: ignore[no-untyped-def]
    session = db()
    shown = [(environment_to_dict(session, name), history(session, name)) for name in environment_names(session)]
    return render_template("environments.html", environments=shown)


def _decide(deployment_id: int, approve: bool):  # type: ignore[no-untyped-def]
    user = current_user()
    deployment = decide(db(), deployment_id, approve, user.name if user else "unknown")
    db().commit()
    if approve:
        services().start_deployments([deployment.id])
    flash(f"Deployment #{deployment.id} {'approved: it runs now' if approve else 'rejected'}.")
    return redirect(url_for("dashboard.environments"))


@bp.post("/deployments/<int:deployment_id>/approve")
def deployment_approve(deployment_id: int):  # type: ignore[no-untyped-def]
    return _decide(deployment_id, True)


@bp.post("/deployments/<int:deployment_id>/reject")
def deployment_reject(deployment_id: int):  # type: ignore[no-untyped-def]
    return _decide(deployment_id, False)


@bp.get("/audit")
def audit():  # type: ignore[no-untyped-def]
    require_admin()
    return render_template("audit.html", entries=recent(db(), 200))
