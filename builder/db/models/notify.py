"""Subscriptions, outbound deliveries and their attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from builder.db.models.base import NEVER_REUSED_IDS, Base, UTCDateTime, utcnow


class Subscription(Base):
    """Someone who wants build, image and deployment events as webhooks."""

    __tablename__ = "subscriptions"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    url_enc: Mapped[str] = mapped_column(Text)  # the URL, sealed (builder/notify/urls.py)
    url_redacted: Mapped[str] = mapped_column(String(1024))  # redact_url(url), what is shown
    secret_enc: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    trigger_id: Mapped[int | None] = mapped_column(ForeignKey("triggers.id", ondelete="CASCADE"))
    ref_pattern: Mapped[str | None] = mapped_column(String(255))
    style: Mapped[str] = mapped_column(String(16), default="json")
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OutboundDelivery(Base):
    """One signed webhook to send, retried with backoff until it succeeds or gives up."""

    __tablename__ = "outbound_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    url_enc: Mapped[str] = mapped_column(Text)  # the URL, sealed (builder/notify/urls.py)
    url_redacted: Mapped[str] = mapped_column(String(1024))  # redact_url(url), what is shown
    body: Mapped[str] = mapped_column(Text)
    secret_enc: Mapped[str | None] = mapped_column(Text)
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id", ondelete="SET NULL"))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="SET NULL"))
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str | None] = mapped_column(Text)
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    attempts_log: Mapped[list["DeliveryAttempt"]] = relationship(
        back_populates="delivery", order_by="DeliveryAttempt.attempt", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_outbound_deliveries_due", "state", "next_attempt_at"),
        Index("ix_outbound_deliveries_build", "build_id"),
        Index("ix_outbound_deliveries_deployment", "deployment_id"),
        Index("ix_outbound_deliveries_state_id", "state", "id"),
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("outbound_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    delivery: Mapped[OutboundDelivery] = relationship(back_populates="attempts_log")
