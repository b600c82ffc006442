"""Trigger pages: the list, the create form (the secret shown once), one trigger with its
recent inbound deliveries, edit, disable and delete. Changes are admin-only (``webhooks/auth.py``)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask import session as session_cookie
from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.builds.run.secret_args import secret_build_arg_names
from builder.errors import InputError
from builder.builds.history import recent_deliveries
from builder.db.models import Trigger
from builder.forges.registry import FORGES, display_names, forge_for
from builder.registries.retention_records import retention_records
from builder.triggers.services import (TriggerEdit, TriggerSpec, build_timeout_from_text, create_trigger, delete_trigger,
                                       max_concurrent_from_text,
                              get_trigger, rule_spec, update_trigger, webhook_url)
from webhooks.context import db, services
from webhooks.page_actions import attempt, needs_confirmation, see_other
from webhooks.pages import bp

CREATED_KEY = "created_trigger"
FORM_FIELDS = ("provider", "repository", "clone_url", "image", "dockerfile", "context", "default_branch")

def setup_steps(provider: str) -> list[str]:
    """What to click on the trigger's host, from its forge (none for an unknown one)."""
    forge = forge_for(provider)
    return list(forge.setup_steps) if forge else []


def host_name(provider: str) -> str:
    forge = forge_for(provider)
    return forge.display_name if forge else provider


def _form_choices() -> dict[str, object]:
    """The new-trigger form's host choices and repository hint, from the registered forges."""
    hints = [forge.repository_hint for forge in FORGES.values() if forge.repository_hint]
    return {"providers": display_names(), "repository_hints": hints}


def rules_summary(trigger: Trigger) -> list[str]:
    """One short line per rule: ``branch main → {branch}, latest (Dockerfile)``."""
    shown = []
    for rule in trigger.rules:
        spec = rule_spec(rule)
        pattern = spec.pattern if spec.match != "regex" else f"/{spec.pattern}/"
        where = "" if (spec.dockerfile, spec.context) == ("Dockerfile", ".") else \
            f" ({spec.dockerfile}, context {spec.context})"
        names = secret_build_arg_names(rule.secret_build_args_enc)
        secret = f" · secret build args {', '.join(names)}" if names else ""
        kept = f" · retention keeps {rule.retention_keep}" if rule.retention_keep else ""
        always = " · rebuilds unchanged commits on schedule" if rule.rebuild == "always" else ""
        shown.append(f"{spec.source} {pattern} → {', '.join(spec.tags)}{where}{secret}{kept}{always}")
    return shown


def without_secret_values(raw_rules: str) -> tuple[str, bool]:
    """The rules text to show again after an error: secret build arg values blanked (a secret is
    never rendered), and whether any was."""
    try:
        rules = json.loads(raw_rules)
    except ValueError:
        return raw_rules, False
    blanked = False
    for rule in rules if isinstance(rules, list) else []:
        given = rule.get("secret_build_args") if isinstance(rule, dict) else None
        if isinstance(given, dict) and given:
            rule["secret_build_args"] = {name: "" for name in given}
            blanked = True
    return (json.dumps(rules, indent=1), True) if blanked else (raw_rules, False)


@bp.get("/triggers")
def triggers():  # type: ignore[no-untyped-def]
    rows = list(db().scalars(select(Trigger).order_by(Trigger.repository, Trigger.id)))
    return render_template("triggers.html", triggers=rows, summaries={t.id: rules_summary(t) for t in rows},
                           public_url=services().settings.public_url, webhook_url=webhook_url,
                           hosts=[forge.display_name for forge in FORGES.values()])


@bp.get("/triggers/new")
def trigger_new():  # type: ignore[no-untyped-def]
    return render_template("trigger_new.html", form={"provider": next(iter(FORGES), ""), "dockerfile": "Dockerfile",
                                                      "context": ".", "default_branch": "main"},
                           **_form_choices(), error=None, default_timeout=services().settings.build_timeout)


@bp.post("/triggers")
def trigger_create():  # type: ignore[no-untyped-def]
    ctx = services()
    form = {key: (request.form.get(key) or "").strip() for key in FORM_FIELDS}
    secret = request.form.get("secret") or ""
    generated = not secret
    if generated:
        secret = secrets.token_hex(20)
    data: dict[str, object] = {key: value for key, value in form.items() if value}
    data["secret"] = secret
    for key in ("build_timeout", "max_concurrent", "schedule"):
        form[key] = (request.form.get(key) or "").strip()
    form["public_badge"] = data["public_badge"] = request.form.get("public_badge") == "on"
    try:
        data["build_timeout"] = build_timeout_from_text(form["build_timeout"])
        data["max_concurrent"] = max_concurrent_from_text(form["max_concurrent"])
        data["schedule"] = form["schedule"] or None
        raw_rules = (request.form.get("rules") or "").strip()
        if raw_rules:
            try:
                data["rules"] = json.loads(raw_rules)
            except ValueError as exc:
                raise InputError(f"rules must be a JSON list of rules: {exc}") from None
        spec = TriggerSpec.from_json(data)
        session = db()
        trigger = create_trigger(session, ctx.box, spec, ctx.settings.registry,
                                 allow_file_clones=ctx.settings.allow_file_clones)
        session.commit()
    except InputError as exc:
        db().rollback()
        form["rules"], blanked = without_secret_values(request.form.get("rules") or "")
        error = str(exc) + (" (secret build arg values are not shown again: enter them again)" if blanked else "")
        return render_template("trigger_new.html", form=form, **_form_choices(), error=error,
                               default_timeout=ctx.settings.build_timeout), 400
    # Post/redirect/get: a reload of the page that follows cannot create a second trigger. The
    # secret rides to it once, sealed with the secret key, in the signed session cookie.
    session_cookie[CREATED_KEY] = {"trigger": trigger.id, "secret": ctx.box.seal(secret), "generated": generated}
    return redirect(url_for("dashboard.trigger_created", trigger_id=trigger.id), code=303)


@bp.get("/triggers/<int:trigger_id>/created")
def trigger_created(trigger_id: int):  # type: ignore[no-untyped-def]
    """The trigger just created, with its secret the first time; a reload no longer shows it."""
    ctx = services()
    trigger = get_trigger(db(), trigger_id)
    held = session_cookie.get(CREATED_KEY) or {}
    secret = None
    if held.get("trigger") == trigger_id:
        session_cookie.pop(CREATED_KEY)
        secret = ctx.box.open(held["secret"])
    response = render_template(
        "trigger_created.html", trigger=trigger, secret=secret, generated=bool(held.get("generated")),
        hook_url=webhook_url(ctx.settings.public_url, trigger.provider),
        steps=setup_steps(trigger.provider), host=host_name(trigger.provider), summaries=rules_summary(trigger))
    # The one page that shows a secret: never cached, never kept in the history's back/forward cache.
    return response, 200, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@bp.get("/triggers/<int:trigger_id>")
def trigger_page(trigger_id: int):  # type: ignore[no-untyped-def]
    return _trigger_page(db(), trigger_id)


_EDIT_TEXTS = ("image", "default_branch", "build_timeout", "max_concurrent", "schedule")
_EDIT_CHECKS = ("enabled", "public_badge")


def _edit_values(trigger: Trigger) -> dict[str, Any]:
    """The Edit form's fields as stored."""
    return {**{name: getattr(trigger, name) or "" for name in _EDIT_TEXTS},
            **{name: getattr(trigger, name) for name in _EDIT_CHECKS}}


def _typed_values() -> dict[str, Any]:
    """The Edit form's fields as the person typed them (shown again with the error)."""
    return {**{name: request.form.get(name) or "" for name in _EDIT_TEXTS},
            **{name: request.form.get(name) == "on" for name in _EDIT_CHECKS}}


def _trigger_page(session: Session, trigger_id: int, error: str | None = None,
                  typed: dict[str, Any] | None = None) -> str:
    trigger = get_trigger(session, trigger_id)
    return render_template("trigger.html", trigger=trigger, summaries=rules_summary(trigger),
                           edit=typed or _edit_values(trigger),
                           deliveries=recent_deliveries(session, trigger),
                           retention=retention_records(session, trigger_id=trigger.id, limit=10),
                           hook_url=webhook_url(services().settings.public_url, trigger.provider),
                           steps=setup_steps(trigger.provider), error=error,
                           default_timeout=services().settings.build_timeout)


@bp.post("/triggers/<int:trigger_id>")
def trigger_update(trigger_id: int):  # type: ignore[no-untyped-def]
    session = db()
    trigger = get_trigger(session, trigger_id)
    try:
        edit = TriggerEdit.from_json({"image": request.form.get("image") or "",
                                      "default_branch": request.form.get("default_branch") or "",
                                      "enabled": request.form.get("enabled") == "on",
                                      "public_badge": request.form.get("public_badge") == "on",
                                      "build_timeout": build_timeout_from_text(request.form.get("build_timeout")),
                                      "max_concurrent": max_concurrent_from_text(request.form.get("max_concurrent")),
                                      "schedule": (request.form.get("schedule") or "").strip() or None})
        update_trigger(session, services().box, trigger, edit, services().settings.registry)
        session.commit()
    except InputError as exc:
        session.rollback()
        return _trigger_page(session, trigger_id, error=str(exc), typed=_typed_values()), 400
    flash("Trigger saved.")
    return see_other(url_for("dashboard.trigger_page", trigger_id=trigger_id))


@bp.post("/triggers/<int:trigger_id>/enabled")
def trigger_enable(trigger_id: int):  # type: ignore[no-untyped-def]
    """Disable (``enabled=0``) or enable (``enabled=1``): a disabled trigger records deliveries, builds nothing."""
    session = db()
    trigger = get_trigger(session, trigger_id)
    enabled = request.form.get("enabled") == "1"
    page = url_for("dashboard.trigger_page", trigger_id=trigger_id)
    if not enabled:
        asked = needs_confirmation(f"Disable trigger #{trigger_id} ({trigger.repository})? Its webhooks are "
                                   "recorded and nothing is built until it is enabled again.", "Disable", page)
        if asked is not None:
            return asked
    update_trigger(session, services().box, trigger, TriggerEdit.from_json({"enabled": enabled}),
                   services().settings.registry)
    session.commit()
    flash("Trigger enabled." if enabled else "Trigger disabled: deliveries are recorded, nothing is built.")
    return see_other(request.form.get("back") if request.form.get("back") == "/triggers" else page)


@bp.post("/triggers/<int:trigger_id>/delete")
def trigger_delete(trigger_id: int):  # type: ignore[no-untyped-def]
    session = db()
    repository = get_trigger(session, trigger_id).repository
    page = url_for("dashboard.trigger_page", trigger_id=trigger_id)
    asked = needs_confirmation(f"Delete trigger #{trigger_id} ({repository})? Its builds stay in the history.",
                               "Delete", page)
    if asked is not None:
        return asked

    def delete() -> str:
        delete_trigger(session, trigger_id)
        session.commit()
        flash(f"Trigger {trigger_id} ({repository}) deleted; its builds stay in the history.")
        return url_for("dashboard.triggers")
    return attempt(delete, page)
