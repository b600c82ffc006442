"""Subscriptions: build, image and deployment events delivered as signed webhooks."""

from __future__ import annotations

import fnmatch
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.notify.deliveries import new_delivery
from builder.errors import InputError
from builder.db.models import Build, OutboundDelivery, Subscription
from builder.notify.targets import TargetPolicy, check_url
from builder.notify.urls import SealedUrl, seal_url
from builder.secrets import SecretBox

EVENTS = ("build.queued", "build.started", "build.succeeded", "build.failed", "build.cancelled",
          "image.pushed", "deployment.succeeded", "deployment.failed", "deployment.awaiting_approval")
BUILD_EVENTS = {"queued": "build.queued", "running": "build.started", "succeeded": "build.succeeded",
                "failed": "build.failed", "cancelled": "build.cancelled"}
STYLES = ("json", "slack")


def create_subscription(session: Session, box: SecretBox, *, url: str, events: list[str], secret: str | None,
                        trigger_id: int | None, ref_pattern: str | None, style: str,
                        policy: TargetPolicy) -> Subscription:
    unknown = sorted(set(events) - set(EVENTS) - {"*"})
    if not events or unknown:
        raise InputError(f"events must be some of {', '.join(EVENTS)} (or *); unknown: {', '.join(unknown)}")
    if style not in STYLES:
        raise InputError(f"style must be one of {', '.join(STYLES)}")
    check_url(url, policy, resolve_names=False)
    sealed = seal_url(box, url)
    subscription = Subscription(url_enc=sealed.enc, url_redacted=sealed.redacted, events=sorted(set(events)),
                                secret_enc=box.seal(secret) if secret else None, trigger_id=trigger_id,
                                ref_pattern=ref_pattern, style=style)
    session.add(subscription)
    session.flush()
    return subscription


def notify(session: Session, event: str, payload: dict[str, Any], *, max_attempts: int, trigger_id: int | None = None,
           ref_name: str | None = None, **links: int | None) -> list[OutboundDelivery]:
    """Queue a delivery of ``event`` for every subscription that wants it (not committed), each tried at most
    ``max_attempts`` times (``BUILDHOOK_DELIVERY_ATTEMPTS``)."""
    deliveries = []
    for subscription in session.scalars(select(Subscription).where(Subscription.enabled.is_(True))):
        if event not in subscription.events and "*" not in subscription.events:
            continue
        if subscription.trigger_id is not None and subscription.trigger_id != trigger_id:
            continue
        if subscription.ref_pattern and not (ref_name and fnmatch.fnmatchcase(ref_name, subscription.ref_pattern)):
            continue
        delivery = new_delivery(event, SealedUrl(subscription.url_enc, subscription.url_redacted), payload,
                                subscription.secret_enc, max_attempts=max_attempts, style=subscription.style,
                                subscription_id=subscription.id,
                                **links)
        session.add(delivery)
        deliveries.append(delivery)
    return deliveries


def build_payload(build: Build, public_url: str) -> dict[str, Any]:
    return {
        "build": build.id,
        "trigger": build.trigger_id,
        "state": build.state,
        "repository": build.repository,
        "ref": build.ref,
        "ref_name": build.ref_name,
        "pull_request": build.pull_request,
        "commit": build.commit,
        "image": build.image,
        "tags": list(build.tags),
        "digest": build.digest,
        "error": build.error,
        "scheduled_for": build.scheduled_for.isoformat() if build.scheduled_for else None,  # a schedule's build
        "url": f"{public_url.rstrip('/')}/builds/{build.id}",
    }


def subscription_to_dict(subscription: Subscription) -> dict[str, Any]:
    return {"id": subscription.id, "url": subscription.url_redacted, "events": subscription.events,
            "trigger": subscription.trigger_id, "ref_pattern": subscription.ref_pattern, "style": subscription.style,
            "signed": subscription.secret_enc is not None, "enabled": subscription.enabled,
            "created_at": subscription.created_at.isoformat()}
