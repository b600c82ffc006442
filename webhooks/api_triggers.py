"""Triggers in the JSON API: list, create, show, edit (PATCH), delete, run now, recent deliveries.

Changes need the admin role (``webhooks.auth`` refuses other methods than GET to viewers).
"""

from __future__ import annotations

from flask import jsonify, request
from sqlalchemy import select

from builder.builds.queries import build_to_dict
from builder.builds.history import deliveries_page, inbound_delivery_to_dict
from builder.builds.manual_runs import run_request, start_run
from builder.db.models import Trigger
from builder.triggers.services import (TriggerEdit, TriggerSpec, create_trigger, delete_trigger, get_trigger, trigger_to_dict,
                              update_trigger)
from webhooks.api import bp, int_arg, page_size
from webhooks.auth import current_user
from webhooks.context import db, services


@bp.get("/triggers")
def triggers_index():  # type: ignore[no-untyped-def]
    public_url = services().settings.public_url
    triggers = db().scalars(select(Trigger).order_by(Trigger.id))
    return jsonify({"triggers": [trigger_to_dict(t, public_url) for t in triggers]})


@bp.post("/triggers")
def triggers_create():  # type: ignore[no-untyped-def]
    ctx = services()
    spec = TriggerSpec.from_json(request.get_json(silent=True))
    session = db()
    trigger = create_trigger(session, ctx.box, spec, ctx.settings.registry,
                             allow_file_clones=ctx.settings.allow_file_clones)
    session.commit()
    return jsonify(trigger_to_dict(trigger, ctx.settings.public_url)), 201


@bp.get("/triggers/<int:trigger_id>")
def triggers_show(trigger_id: int):  # type: ignore[no-untyped-def]
    return jsonify(trigger_to_dict(get_trigger(db(), trigger_id), services().settings.public_url))


@bp.patch("/triggers/<int:trigger_id>")
def triggers_edit(trigger_id: int):  # type: ignore[no-untyped-def]
    """Change the fields given, checked as on create; ``{"enabled": false}`` disables the trigger."""
    ctx = services()
    edit = TriggerEdit.from_json(request.get_json(silent=True))
    session = db()
    trigger = update_trigger(session, ctx.box, get_trigger(session, trigger_id), edit, ctx.settings.registry,
                             allow_file_clones=ctx.settings.allow_file_clones)
    session.commit()
    return jsonify(trigger_to_dict(trigger, ctx.settings.public_url))


@bp.delete("/triggers/<int:trigger_id>")
def triggers_delete(trigger_id: int):  # type: ignore[no-untyped-def]
    """204; its builds and deliveries stay. 409 while one of its builds is queued or running."""
    session = db()
    delete_trigger(session, trigger_id)
    session.commit()
    return "", 204


@bp.get("/triggers/<int:trigger_id>/deliveries")
def triggers_deliveries(trigger_id: int):  # type: ignore[no-untyped-def]
    """Its inbound webhooks, newest first, as the trigger page lists them: {"deliveries", "next"}."""
    session = db()
    trigger = get_trigger(session, trigger_id)
    rows, started, next_cursor = deliveries_page(session, trigger, before=int_arg("before"), limit=page_size())
    return jsonify({"deliveries": [inbound_delivery_to_dict(row, started[row.id]) for row in rows],
                    "next": next_cursor})


@bp.post("/triggers/<int:trigger_id>/runs")
def triggers_run(trigger_id: int):  # type: ignore[no-untyped-def]
    """Run a trigger now on a branch, a tag or a commit: 201 {"builds": [...]}."""
    ctx = services()
    choice = run_request(request.get_json(silent=True))
    session = db()
    trigger = get_trigger(session, trigger_id)
    user = current_user()
    builds = start_run(session, trigger, ctx.settings, **choice, by=user.name if user is not None else None)
    ctx.start_builds([build.id for build in builds])
    return jsonify({"builds": [build_to_dict(build) for build in builds]}), 201
