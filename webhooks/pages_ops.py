"""Deployments, outbound deliveries (with Redeliver) and the overview of the last 14 days."""

from __future__ import annotations

from flask import render_template, request
from sqlalchemy import select

from builder.errors import InputError
from builder.ids import parse_id
from builder.builds.overview import overview as overview_numbers
from builder.db.models import DeployTarget, Deployment, OutboundDelivery
from webhooks.context import db
from webhooks.pages import bp

PAGE = 50
DELIVERY_STATES = ("pending", "succeeded", "failed")


def before_cursor() -> int | None:
    raw = (request.args.get("before") or "").strip()
    if not raw:
        return None
    return parse_id(raw, "before must be an id")


@bp.get("/deployments")
def deployments():  # type: ignore[no-untyped-def]
    session = db()
    query = select(Deployment).order_by(Deployment.id.desc()).limit(PAGE + 1)
    before = before_cursor()
    if before is not None:
        query = query.where(Deployment.id < before)
    rows = list(session.scalars(query))
    next_cursor = rows[PAGE - 1].id if len(rows) > PAGE else None
    rows = rows[:PAGE]
    ids = [row.id for row in rows]
    latest: dict[int, OutboundDelivery] = {}
    if ids:  # the newest webhook delivery of each deployment (docker targets have none)
        for delivery in session.scalars(select(OutboundDelivery).where(OutboundDelivery.deployment_id.in_(ids))
                                        .order_by(OutboundDelivery.id)):
            latest[delivery.deployment_id] = delivery  # type: ignore[index]
    target_ids = {row.target_id for row in rows if row.target_id is not None}
    targets = {t.id: t for t in session.scalars(select(DeployTarget).where(DeployTarget.id.in_(target_ids)))} \
        if target_ids else {}
    return render_template("deployments.html", deployments=rows, latest=latest, targets=targets,
                           next_cursor=next_cursor, before=before)


@bp.get("/deliveries")
def deliveries():  # type: ignore[no-untyped-def]
    state = request.args.get("state") or None
    if state is not None and state not in DELIVERY_STATES:
        raise InputError(f"state must be one of {', '.join(DELIVERY_STATES)}")
    query = select(OutboundDelivery).order_by(OutboundDelivery.id.desc()).limit(PAGE + 1)
    before = before_cursor()
    if before is not None:
        query = query.where(OutboundDelivery.id < before)
    if state is not None:
        query = query.where(OutboundDelivery.state == state)
    rows = list(db().scalars(query))
    next_cursor = rows[PAGE - 1].id if len(rows) > PAGE else None
    return render_template("deliveries.html", deliveries=rows[:PAGE], next_cursor=next_cursor, before=before,
                           state=state, states=DELIVERY_STATES)


@bp.get("/overview")
def overview():  # type: ignore[no-untyped-def]
    numbers = overview_numbers(db())
    peak = max((day.total for day in numbers.days), default=0)
    return render_template("overview.html", o=numbers, peak=peak)
