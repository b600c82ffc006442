"""Outbound webhook deliveries: queue, send, record each attempt, retry with backoff, redeliver.

A delivery row is created in the same transaction as whatever caused it, so it
is never lost; the worker's relay hands due rows to ``buildhook.deliver``
tasks, and ``send_delivery`` claims a row before sending it, so a row sent
twice at once is impossible.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from builder.errors import Conflict, InputError, NotFound
from builder.db.models import DeliveryAttempt, OutboundDelivery, utcnow
from builder.notify.targets import TargetPolicy, check_url
from builder.notify.urls import SealedUrl
from builder.notify.webhooks import SendResult, backoff_seconds, new_delivery_id, render_body, send_webhook
from builder.secrets import SecretBox

log = logging.getLogger(__name__)

LEASE_SECONDS = 120  # a claimed delivery whose worker died is due again after this


def new_delivery(event: str, url: SealedUrl, payload: dict[str, Any], secret_enc: str | None, *,
                 max_attempts: int, style: str = "json", **links: int | None) -> OutboundDelivery:
    return OutboundDelivery(
        uuid=new_delivery_id(), event=event, url_enc=url.enc, url_redacted=url.redacted,
        body=render_body(event, payload, style).decode(), secret_enc=secret_enc, max_attempts=max_attempts,
        next_attempt_at=utcnow(), **links)


def due_deliveries(sessions: sessionmaker[Session], limit: int = 200) -> list[int]:
    with sessions() as session:
        return list(session.scalars(
            select(OutboundDelivery.id)
            .where(OutboundDelivery.state == "pending", OutboundDelivery.next_attempt_at <= utcnow())
            .order_by(OutboundDelivery.next_attempt_at).limit(limit)))


def _claim(session: Session, delivery_id: int) -> bool:
    now = utcnow()
    result = session.execute(
        update(OutboundDelivery)
        .where(OutboundDelivery.id == delivery_id, OutboundDelivery.state == "pending",
               OutboundDelivery.next_attempt_at <= now)
        .values(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS), attempts=OutboundDelivery.attempts + 1))
    session.commit()
    return result.rowcount == 1


Finished = Callable[[Session, OutboundDelivery], None]


def send_delivery(sessions: sessionmaker[Session], box: SecretBox, delivery_id: int, *, backoff_base: float = 2.0,
                  timeout: float = 10.0, on_finished: Finished | None = None,
                  policy: TargetPolicy = TargetPolicy()) -> str | None:
    """Send one due delivery once; return its new state, or None if it was not due. A target that
    the ``policy`` refuses fails it at once (not retried), before anything is sent."""
    with sessions() as session:
        if not _claim(session, delivery_id):
            return None
        delivery = session.get(OutboundDelivery, delivery_id)
        assert delivery is not None
        secret = box.open(delivery.secret_enc) if delivery.secret_enc else None
        result = _checked_send(delivery, box.open(delivery.url_enc), secret, policy, timeout)
        session.add(DeliveryAttempt(delivery_id=delivery.id, attempt=delivery.attempts,
                                    status_code=result.status_code, response_excerpt=result.body_excerpt,
                                    duration_ms=result.duration_ms))
        delivery.last_status_code = result.status_code
        delivery.last_response = result.body_excerpt
        delivery.last_duration_ms = result.duration_ms
        if result.ok:
            delivery.state, delivery.delivered_at = "succeeded", utcnow()
        elif result.retryable and delivery.attempts < delivery.max_attempts:
            delivery.next_attempt_at = utcnow() + timedelta(seconds=backoff_seconds(delivery.attempts, base=backoff_base))
        else:
            delivery.state = "failed"
        if delivery.state != "pending" and on_finished is not None:
            on_finished(session, delivery)
        session.commit()
        return delivery.state


def _checked_send(delivery: OutboundDelivery, url: str, secret: str | None, policy: TargetPolicy,
                  timeout: float) -> SendResult:
    """Send to the address that was checked just now; a refused target is a permanent failure."""
    try:
        target = check_url(url, policy)
    except InputError as exc:
        reason = str(exc) if str(exc).startswith("refused: ") else f"refused: {exc}"
        log.warning("webhook %s delivery %s to %s %s", delivery.event, delivery.uuid, delivery.url_redacted, reason)
        return SendResult(None, reason, 0, ok=False, retryable=False)
    if not target.addresses:
        return SendResult(None, f"cannot resolve {target.host}", 0, ok=False, retryable=True)
    return send_webhook(url, delivery.event, delivery.body.encode(), secret, delivery.uuid, timeout=timeout,
                        connect_to=target.addresses[0])


def redeliver(session: Session, delivery_id: int, extra_attempts: int = 3) -> OutboundDelivery:
    """Send a delivery again (same body and delivery id), whatever became of it."""
    delivery = session.get(OutboundDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} not found")
    if delivery.state == "pending" and delivery.attempts == 0:
        raise Conflict(f"delivery {delivery_id} has not been sent yet")
    delivery.state = "pending"
    delivery.next_attempt_at = utcnow()
    delivery.max_attempts = delivery.attempts + extra_attempts
    session.flush()
    return delivery


def delivery_to_dict(delivery: OutboundDelivery, with_attempts: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": delivery.id,
        "delivery": delivery.uuid,
        "event": delivery.event,
        "url": delivery.url_redacted,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "max_attempts": delivery.max_attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.state == "pending" else None,
        "last_status_code": delivery.last_status_code,
        "last_response": delivery.last_response,
        "last_duration_ms": delivery.last_duration_ms,
        "deployment": delivery.deployment_id,
        "subscription": delivery.subscription_id,
        "build": delivery.build_id,
        "signed": delivery.secret_enc is not None,
        "created_at": delivery.created_at.isoformat(),
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
        "request": json.loads(delivery.body) if delivery.body.startswith("{") else delivery.body,
    }
    if with_attempts:
        shown["attempts_log"] = [
            {"attempt": a.attempt, "status_code": a.status_code, "response": a.response_excerpt,
             "duration_ms": a.duration_ms, "at": a.at.isoformat()}
            for a in delivery.attempts_log
        ]
    return shown
