"""The JSON API under /api/."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from builder.builds import build_to_dict, get_build, list_builds, log_lines
from builder.errors import InputError
from builder.manual_runs import run_request, start_run
from builder.outbox import dispatch
from builder.triggers import TriggerSpec, create_trigger, get_trigger, trigger_to_dict
from builder.models import Trigger
from sqlalchemy import select
from webhooks.context import db, services

bp = Blueprint("api", __name__, url_prefix="/api")


def _int_arg(name: str, default: int | None = None, maximum: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"query parameter {name!r} must be an integer") from None
    if value < 0:
        raise InputError(f"query parameter {name!r} must not be negative")
    return min(value, maximum) if maximum is not None else value


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
    trigger = create_trigger(session, ctx.box, spec, ctx.settings.registry)
    session.commit()
    return jsonify(trigger_to_dict(trigger, ctx.settings.public_url)), 201


@bp.get("/triggers/<int:trigger_id>")
def triggers_show(trigger_id: int):  # type: ignore[no-untyped-def]
    return jsonify(trigger_to_dict(get_trigger(db(), trigger_id), services().settings.public_url))


@bp.post("/triggers/<int:trigger_id>/runs")
def triggers_run(trigger_id: int):  # type: ignore[no-untyped-def]
    """Run a trigger now on a branch, a tag or a commit: 201 {"builds": [...]}."""
    ctx = services()
    choice = run_request(request.get_json(silent=True))
    session = db()
    trigger = get_trigger(session, trigger_id)
    builds = start_run(session, trigger, ctx.settings, **choice)
    dispatch(ctx.sessions, ctx.send, [build.id for build in builds])
    return jsonify({"builds": [build_to_dict(build) for build in builds]}), 201


@bp.get("/builds")
def builds_index():  # type: ignore[no-untyped-def]
    limit = _int_arg("limit", 50, maximum=500) or 50
    builds = list_builds(db(), limit=limit, before=_int_arg("before"), trigger_id=_int_arg("trigger"))
    next_cursor = builds[-1].id if len(builds) == limit else None
    return jsonify({"builds": [build_to_dict(b) for b in builds], "next": next_cursor})


@bp.get("/builds/<int:build_id>")
def builds_show(build_id: int):  # type: ignore[no-untyped-def]
    return jsonify(build_to_dict(get_build(db(), build_id)))


@bp.get("/builds/<int:build_id>/log")
def builds_log(build_id: int):  # type: ignore[no-untyped-def]
    session = db()
    build = get_build(session, build_id)
    lines = log_lines(session, build_id, after=_int_arg("after", 0) or 0)
    if request.args.get("format") == "text":
        response = Response("".join(f"{line.text}\n" for line in lines), mimetype="text/plain")
        if request.args.get("download") == "1":
            response.headers["Content-Disposition"] = f'attachment; filename="build-{build.id}.log"'
        return response
    return jsonify(
        {
            "build": build.id,
            "state": build.state,
            "lines": [{"seq": line.seq, "text": line.text} for line in lines],
            "next_after": lines[-1].seq if lines else _int_arg("after", 0),
        }
    )
