"""The audit log of changes made through the API and the pages: triggers, deploy rules, users, tokens.

An ``after_request`` hook: a change that succeeded (a non-GET answered below 400) at one of
the endpoints below adds an entry naming the signed-in user, the action and its subject.
Approvals, promotions, rollbacks and environment settings record their own entries
(``builder.deploys.promotions``, ``builder.deploys.environments``), so the command line's are recorded too.
"""

from __future__ import annotations

from flask import Flask, Response, request

from builder.accounts.audit import record
from webhooks.auth import SAFE_METHODS, current_user
from webhooks.context import db

ACTIONS = {  # endpoint -> (action, what its subject is)
    "api.triggers_create": ("trigger.created", "trigger"), "dashboard.trigger_create": ("trigger.created", "trigger"),
    "api.triggers_edit": ("trigger.updated", "trigger"), "dashboard.trigger_update": ("trigger.updated", "trigger"),
    "dashboard.trigger_enable": ("trigger.updated", "trigger"),
    "api.triggers_delete": ("trigger.deleted", "trigger"), "dashboard.trigger_delete": ("trigger.deleted", "trigger"),
    "deploy_api.deploy_rules_create": ("deploy_rule.created", "deploy rule"),
    "api.users_create": ("user.created", "user"), "api.users_update": ("user.password_changed", "user"),
    "api.users_delete": ("user.removed", "user"),
    "api.tokens_create": ("token.created", "token"), "api.tokens_revoke": ("token.revoked", "token"),
}
KEYS = ("trigger_id", "token_id", "name")  # the URL's part that names the subject


def _subject(kind: str, response: Response) -> str | None:
    """What was changed: the URL's id or name, else the new object's (from the JSON answer)."""
    args = request.view_args or {}
    for key in KEYS:
        if key in args:
            return f"{kind} {args[key]}"
    body = response.get_json(silent=True) if response.is_json else None
    if isinstance(body, dict):
        found = body.get("name") if isinstance(body.get("name"), str) else body.get("id")
        return f"{kind} {found}" if found is not None else None
    return None


def audit_change(response: Response) -> Response:
    found = ACTIONS.get(request.endpoint or "")
    user = current_user()
    if found is None or user is None or request.method in SAFE_METHODS or response.status_code >= 400:
        return response
    action, kind = found
    session = db()
    details = {"user": response.get_json(silent=True).get("user")} if action == "token.created" else {}
    record(session, user.name, action, _subject(kind, response), path=request.path, **details)
    session.commit()
    return response


def register(app: Flask) -> None:
    app.after_request(audit_change)
