"""The "Inbound" page: every webhook delivery received, including those no trigger took."""

from __future__ import annotations

from flask import flash, render_template, request, url_for
from sqlalchemy import select

from builder.intake.delivery_requests import BODY_CAP, Redelivery, replayable, shown_body
from builder.intake.inbound import OUTCOMES, check_outcome, get_delivery, inbound_page
from builder.builds.history import builds_started
from builder.intake.receive import receive_hook
from builder.db.models import DeliveryRequest, Trigger
from builder.builds.outbox import dispatch
from builder.forges.registry import FORGES
from webhooks.context import db, services
from webhooks.page_actions import attempt
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
    stored = session.get(DeliveryRequest, delivery.id)
    return render_template("inbound_delivery.html", d=delivery, trigger=trigger,
                           builds=builds_started(session, [delivery])[delivery.id], stored=stored,
                           body=shown_body(stored) if stored else None, cap=BODY_CAP)


@bp.post("/inbound/<int:delivery_id>/redeliver")
def inbound_redeliver(delivery_id: int):  # type: ignore[no-untyped-def]
    """Redeliver to self: the stored request through the intake again, as a new delivery."""
    page = url_for("dashboard.inbound_delivery", delivery_id=delivery_id)

    def again() -> str:
        ctx = services()
        delivery, stored = replayable(db(), delivery_id)
        provider, headers, body = FORGES[delivery.provider], dict(stored.headers), stored.body
        redelivery = Redelivery(of=delivery.id, trigger_id=delivery.trigger_id or 0)
        db().rollback()  # the intake writes in a transaction of its own
        result = receive_hook(ctx.sessions, provider, headers, body, ctx.settings, ctx.box, redelivery=redelivery)
        announce = set(result.announce)
        dispatch(ctx.sessions, ctx.send, result.build_ids,
                 on_queued=lambda build_id, state: ctx.report(build_id, state) if build_id in announce else None)
        flash(f"Delivery #{delivery_id} redelivered as #{result.delivery}: {result.reason or result.outcome}.")
        return url_for("dashboard.inbound_delivery", delivery_id=result.delivery)
    return attempt(again, page)
