"""Registry events, deploy rules and targets, deployments, environments, retention's deletions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from builder.db.models.base import NEVER_REUSED_IDS, Base, UTCDateTime, utcnow


class RegistryEvent(Base):
    """One event from a registry notification, whatever became of it."""

    __tablename__ = "registry_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str | None] = mapped_column(String(64))
    registry_host: Mapped[str | None] = mapped_column(String(255))
    repository: Mapped[str | None] = mapped_column(String(255))
    tag: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_registry_events_source_event"),
        Index("ix_registry_events_received_at", "received_at"),
    )


class DeployRule(Base):
    """Image repository + tag pattern -> environment -> targets."""

    __tablename__ = "deploy_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    repository: Mapped[str] = mapped_column(String(255))
    tag_match: Mapped[str] = mapped_column(String(8))
    tag_pattern: Mapped[str] = mapped_column(String(255))
    environment: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # host[:port] of the registry whose images it deploys; NULL (rules made before 0009): BUILDHOOK_REGISTRY
    registry_host: Mapped[str | None] = mapped_column(String(255))
    # False: never fires on registry events, serves only promotions and rollbacks
    auto: Mapped[bool] = mapped_column(default=True)

    targets: Mapped[list["DeployTarget"]] = relationship(
        back_populates="rule", order_by="DeployTarget.id", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_deploy_rules_repository", "repository"), NEVER_REUSED_IDS)


class DeployTarget(Base):
    __tablename__ = "deploy_targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("deploy_rules.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "webhook" | "docker"
    url_enc: Mapped[str | None] = mapped_column(Text)  # the webhook URL, sealed (builder/notify/urls.py)
    url_redacted: Mapped[str | None] = mapped_column(String(1024))  # redact_url(url), what is shown
    secret_enc: Mapped[str | None] = mapped_column(Text)
    container: Mapped[str | None] = mapped_column(String(255))
    docker_host: Mapped[str | None] = mapped_column(String(1024))

    rule: Mapped[DeployRule] = relationship(back_populates="targets")


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("deploy_rules.id", ondelete="SET NULL"))
    target_id: Mapped[int | None] = mapped_column(ForeignKey("deploy_targets.id", ondelete="SET NULL"))
    registry_event_id: Mapped[int | None] = mapped_column(ForeignKey("registry_events.id", ondelete="SET NULL"))
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"))
    environment: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    registry_host: Mapped[str | None] = mapped_column(String(255))
    repository: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why it exists: "event" (a registry event), "promotion" or "rollback" (of source_deployment_id's digest)
    cause: Mapped[str] = mapped_column(String(16), default="event")
    source_deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id", ondelete="SET NULL"))
    requested_by: Mapped[str | None] = mapped_column(String(64))
    # Who approved or rejected it, and when (environments that require approval)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_deployments_state", "state", "dispatched_at"),
        Index("ix_deployments_environment_repository", "environment", "repository", "id"),
        Index("ix_deployments_build", "build_id"),
    )


class Environment(Base):
    """An environment's settings; the environment itself exists once a deploy rule names it."""

    __tablename__ = "environments"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    requires_approval: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))


class RetentionDeletion(Base):
    """Something retention deleted (or tried to): a registry tag or manifest (``builder/registries/retention.py``),
    or old build logs and deliveries (``count`` rows, ``builder/db/pruning.py``)."""

    __tablename__ = "retention_deletions"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # tag | manifest | build_logs | deliveries | outbound_deliveries
    trigger_id: Mapped[int | None] = mapped_column(ForeignKey("triggers.id", ondelete="SET NULL"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("trigger_rules.id", ondelete="SET NULL"))
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"))
    repository: Mapped[str | None] = mapped_column(String(512))
    tag: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(128))
    count: Mapped[int] = mapped_column(Integer, default=1)
    outcome: Mapped[str] = mapped_column(String(16))  # deleted | refused | missing
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_retention_deletions_build_tag", "build_id", "tag"),
        Index("ix_retention_deletions_at", "at"),
        Index("ix_retention_deletions_digest", "digest"),  # a build's page: was its manifest deleted (0021)
    )
