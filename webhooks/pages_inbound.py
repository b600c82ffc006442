"""The "Inbound" page: every webhook delivery received, including those no trigger took."""

from __future__ import annotations

from flask import render_template, request
from sqlalchemy import select

from builder.inbound import OUTCOMES, check_outcome, get_delivery, inbound_page
from builder.history import builds_started
from builder.models import Trigger
from webhooks.context import db
from webhooks.pages import bp
from webhooks.pages_ops import before_cursor


@bp.get("/inbound")
def inbound():  # type: ignore[no-untyped-def]
    session = db()
    outcome = check_outcome(request.args.get("outcome"))
    rows, started, next_cursor = inbound_page(session, before=before_cursor(), outcome=outcome)
    trigger_ids = {row.trigger_id for row in rows if row.trigger_id is not None}
    triggers = {t.id: t for t in session.scalars(select(Trigger).where(Trigger.id.in_(trigger_ids)))} \
        if trigger_ids else {}
    return render_template("inbound.html", deliveries=rows, started=started, triggers=triggers,
                           next_cursor=next_cursor, outcome=outcome, outcomes=OUTCOMES)


@bp.get("/inbound/<int:delivery_id>")
def inbound_delivery(delivery_id: int):  # type: ignore[no-untyped-def]
    session = db()
    delivery = get_delivery(session, delivery_id)
    trigger = session.get(Trigger, delivery.trigger_id) if delivery.trigger_id else None
    return render_template("inbound_delivery.html", d=delivery, trigger=trigger,
                           builds=builds_started(session, [delivery])[delivery.id])
