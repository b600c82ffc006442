"""Every inbound webhook delivery, whatever became of it: the "Inbound" page and its API.

A push for a repository no trigger matches (a typo in the trigger's repository name), a wrong
signature, an ignored event: each is a ``Delivery`` row (``builder/intake/receive.py``), listed here
newest first with the builds it started.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from builder.errors import InputError, NotFound
from builder.builds.history import builds_started
from builder.db.models import Delivery
from builder.db.paging import split_page

PAGE_SIZE = 50
OUTCOMES = ("accepted", "no_trigger", "rejected", "ignored", "duplicate", "ping")


def check_outcome(outcome: str | None) -> str | None:
    if outcome and outcome not in OUTCOMES:
        raise InputError(f"outcome must be one of {', '.join(OUTCOMES)}")
    return outcome or None


def inbound_page(session: Session, before: int | None = None, outcome: str | None = None,
                 limit: int = PAGE_SIZE) -> tuple[list[Delivery], dict[int, list[int]], int | None]:
    """A page of deliveries (newest first), the builds each started, and the next cursor."""
    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(Delivery.id < before)
    if outcome is not None:
        query = query.where(Delivery.outcome == outcome)
    rows = list(session.scalars(query))
    page, next_cursor = split_page(rows, limit)
    return page, builds_started(session, page), next_cursor


def get_delivery(session: Session, delivery_id: int) -> Delivery:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound(f"inbound delivery {delivery_id} not found")
    return delivery
