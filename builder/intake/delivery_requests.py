"""What an inbound delivery carried, for the Inbound page, and its redelivery to self.

Each delivery's request is stored with it (``delivery_requests``, one INSERT in the intake's
transaction): the headers with every secret-bearing one replaced by ``****`` (a signature is
as good as the secret to an attacker who can replay it; GitLab's token is the secret itself)
and the body as received, capped at ``BODY_CAP`` bytes. An accepted delivery whose body was
kept whole can be redelivered to self: its stored request runs through the intake again as a
new delivery (``redelivery_of``), for the trigger that took it; the signature is not checked
again (it was redacted, and an admin asked for it), and no dedupe key is set, so it builds again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy.orm import Session

from builder.errors import Conflict, NotFound
from builder.db.models import Delivery, DeliveryRequest
from builder.forges.registry import FORGES

BODY_CAP = 256 * 1024
REDACTED = "****"
# Besides each forge's signature headers (secret_headers()).
HTTP_SECRET_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")


def secret_headers() -> frozenset[str]:
    """Lower-case names of the headers never shown: the registered forges' and HTTP's own."""
    names = [name for forge in FORGES.values() for name in forge.secret_headers]
    return frozenset(name.lower() for name in (*names, *HTTP_SECRET_HEADERS))


@dataclass(frozen=True)
class Redelivery:
    """A redelivery to self: of which accepted delivery, for which trigger."""

    of: int
    trigger_id: int


def request_row(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The ``delivery_requests`` columns (but the delivery's id) of a request as received."""
    secret = secret_headers()
    shown = {name: REDACTED if name.lower() in secret else value for name, value in headers.items()}
    return {"headers": shown, "body": body[:BODY_CAP], "body_bytes": len(body)}


def replayable(session: Session, delivery_id: int) -> tuple[Delivery, DeliveryRequest]:
    """An accepted delivery and its stored request, whole: else why it cannot be redelivered."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound(f"inbound delivery {delivery_id} not found")
    if delivery.outcome != "accepted" or delivery.trigger_id is None:
        raise Conflict(f"only an accepted delivery can be redelivered; #{delivery_id} was {delivery.outcome}")
    stored = session.get(DeliveryRequest, delivery_id)
    if stored is None:
        raise Conflict(f"delivery #{delivery_id}'s request was not kept (received before it was stored)")
    if stored.body_bytes > len(stored.body):
        raise Conflict(f"delivery #{delivery_id}'s payload was cut at {BODY_CAP} bytes: it cannot be sent again")
    return delivery, stored


def shown_body(stored: DeliveryRequest) -> str:
    """The payload as text (undecodable bytes replaced), for the page."""
    return stored.body.decode("utf-8", "replace")
