"""The database: triggers, inbound deliveries, builds and their log lines.

Typed SQLAlchemy 2.0 models. The schema itself is owned by the Alembic
migrations in ``builder/migrations``; keep the two in step.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        # PostgreSQL answers in the session's time zone (the server's TimeZone): back to UTC.
        return value.astimezone(timezone.utc) if value is not None else None


class Base(DeclarativeBase):
    pass


class BuildState(str, enum.Enum):
    QUEUED = "queued"
    CLONING = "cloning"
    BUILDING = "building"
    PUSHING = "pushing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # a path filter found nothing to build
    SUPERSEDED = "superseded"  # a newer push to the same ref and rule came first
    CANCELLED = "cancelled"  # someone cancelled it (builder/build_actions.py)

    @property
    def finished(self) -> bool:
        return self not in (BuildState.QUEUED, BuildState.CLONING, BuildState.BUILDING, BuildState.PUSHING)


class Trigger(Base):
    __tablename__ = "triggers"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    repository: Mapped[str] = mapped_column(String(255))
    clone_url: Mapped[str] = mapped_column(String(1024))
    secret_enc: Mapped[str] = mapped_column(Text)
    image: Mapped[str] = mapped_column(String(255))
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    enabled: Mapped[bool] = mapped_column(default=True)
    # A newer push to the same ref and rule marks its still-queued builds superseded.
    supersede: Mapped[bool] = mapped_column(default=True)
    # Commit statuses: the host's API base URL and an access token (encrypted).
    api_url: Mapped[str | None] = mapped_column(String(1024))
    status_token_enc: Mapped[str | None] = mapped_column(Text)
    # Private repositories: an HTTPS token, or an SSH deploy key with known hosts.
    clone_username: Mapped[str | None] = mapped_column(String(255))
    clone_token_enc: Mapped[str | None] = mapped_column(Text)
    ssh_key_enc: Mapped[str | None] = mapped_column(Text)
    ssh_known_hosts: Mapped[str | None] = mapped_column(Text)
    # Seconds a build may run before it is stopped and failed; None: BUILDHOOK_BUILD_TIMEOUT.
    build_timeout: Mapped[int | None] = mapped_column(Integer)
    # Its status badge (/badge/<id>.svg) answers without sign-in.
    public_badge: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Builds of this trigger running at once (builder/fair_share.py); None: no limit but the workers'.
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    # A cron expression (UTC) rebuilding the default branch's tip (builder/schedules.py), and its next
    # due time, claimed by one worker with a conditional UPDATE.
    schedule: Mapped[str | None] = mapped_column(String(255))
    schedule_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    builds: Mapped[list["Build"]] = relationship(back_populates="trigger")
    rules: Mapped[list["TriggerRule"]] = relationship(
        back_populates="trigger", order_by="TriggerRule.position", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_triggers_provider_repository", "provider", "repository"),)


class TriggerRule(Base):
    """One build rule of a trigger; rules are tried in ``position`` order."""

    __tablename__ = "trigger_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger_id: Mapped[int] = mapped_column(ForeignKey("triggers.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # "pull_request" needs more than 8 (migration 0015)
    match: Mapped[str] = mapped_column(String(8))
    pattern: Mapped[str] = mapped_column(String(1024))
    dockerfile: Mapped[str] = mapped_column(String(1024))
    context: Mapped[str] = mapped_column(String(1024))
    build_args: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    target: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    included_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    ignored_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Secret build args: JSON {NAME: Fernet token of the value} (builder/build_secrets.py); merged
    # into the build args when a build runs, never copied into ``builds``, never shown but by name.
    secret_build_args_enc: Mapped[str | None] = mapped_column(Text)
    # {"command": [...], "timeout": seconds}: run in the pushed digest before any tag moves (builder/image_test.py)
    test: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Pull requests (migration 0015): push the image (pull_request rules: false by default), trust
    # forks ("untrusted" | "trusted"), and cancel a running build when a newer commit comes.
    push: Mapped[bool] = mapped_column(default=True)
    forks: Mapped[str] = mapped_column(String(16), default="untrusted")
    cancel_running: Mapped[bool] = mapped_column(default=False)
    # "always": a scheduled run rebuilds an unchanged commit; None: it skips one already built.
    rebuild: Mapped[str | None] = mapped_column(String(16))
    # Per-commit tags kept in the registry (builder/retention.py); None: all.
    retention_keep: Mapped[int | None] = mapped_column(Integer)
    # ["linux/amd64", "linux/arm64"]: one image per platform and an OCI index (builder/platforms.py); None: one
    platforms: Mapped[list[str] | None] = mapped_column(JSON)

    trigger: Mapped[Trigger] = relationship(back_populates="rules")

    __table_args__ = (UniqueConstraint("trigger_id", "position", name="uq_trigger_rules_position"),)


class Delivery(Base):
    """One inbound webhook request, whatever became of it."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str | None] = mapped_column(String(255))
    event: Mapped[str | None] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(String(255))
    trigger_id: Mapped[int | None] = mapped_column(ForeignKey("triggers.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    # Set only for accepted deliveries: a replay (same provider + delivery id)
    # hits the unique constraint instead of starting a second build.
    dedupe_key: Mapped[str | None] = mapped_column(String(512), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A redelivery to self of an accepted delivery (builder/delivery_requests.py): which one.
    redelivery_of: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"))

    __table_args__ = (
        Index("ix_deliveries_received_at", "received_at"),
        Index("ix_deliveries_trigger_id_id", "trigger_id", "id"),
        Index("ix_deliveries_provider_repository_id", "provider", "repository", "id"),
    )


class DeliveryRequest(Base):
    """What a delivery's request carried: its headers (secrets redacted) and its body (capped)."""

    __tablename__ = "delivery_requests"

    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_bytes: Mapped[int] = mapped_column(Integer)  # as received: more than len(body) when capped


class Build(Base):
    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger_id: Mapped[int | None] = mapped_column(ForeignKey("triggers.id", ondelete="SET NULL"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("trigger_rules.id", ondelete="SET NULL"))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"))
    provider: Mapped[str] = mapped_column(String(32))
    repository: Mapped[str] = mapped_column(String(255))
    clone_url: Mapped[str] = mapped_column(String(1024))
    before: Mapped[str | None] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(1024))
    ref_type: Mapped[str] = mapped_column(String(16))
    ref_name: Mapped[str] = mapped_column(String(1024))
    commit: Mapped[str] = mapped_column(String(64))
    commit_message: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(255))
    image: Mapped[str] = mapped_column(String(512))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    dockerfile: Mapped[str] = mapped_column(String(1024))
    context: Mapped[str] = mapped_column(String(1024))
    build_args: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    target: Mapped[str | None] = mapped_column(String(255))
    # Path filters still to check in the clone (the payload did not list every changed file).
    included_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    ignored_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default=BuildState.QUEUED.value)
    error: Mapped[str | None] = mapped_column(Text)
    # Why a build was skipped or superseded.
    reason: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cloning_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    building_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pushing_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Someone asked to cancel the build; a running build's worker notices and stops it.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The worker running the build ("host:pid") and its last sign of life; the reaper
    # (builder/reaper.py) requeues or fails a running build whose heartbeat is older than its TTL.
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What started it: "push", "manual" (a run now), "rebuild" (of build rebuild_of), "schedule";
    # started_by: the person who ran or rebuilt it.
    origin: Mapped[str] = mapped_column(String(16), default="push", server_default="push")
    started_by: Mapped[str | None] = mapped_column(String(255))
    rebuild_of: Mapped[int | None] = mapped_column(Integer)
    # A pull or merge request's build (migration 0015): its number and base branch (``ref`` is the
    # request ref, ``ref_name`` the head branch); ``fork``: None, "trusted" or "untrusted" (no secret
    # build args, no push). ``push``: False when the build only proves the Dockerfile builds.
    pull_request: Mapped[int | None] = mapped_column(Integer)
    base_branch: Mapped[str | None] = mapped_column(String(1024))
    fork: Mapped[str | None] = mapped_column(String(16))
    push: Mapped[bool] = mapped_column(default=True)
    # The due time of the trigger's schedule that made this build; None: a push or a manual run.
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The platforms it was built for (its rule's, when it ran): its digest is then an OCI image index's.
    platforms: Mapped[list[str] | None] = mapped_column(JSON)

    trigger: Mapped[Trigger | None] = relationship(back_populates="builds")
    log_lines: Mapped[list["BuildLogLine"]] = relationship(
        back_populates="build", order_by="BuildLogLine.seq", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_builds_created_at", "created_at"),
        Index("ix_builds_state_dispatched", "state", "dispatched_at"),
        Index("ix_builds_trigger_created", "trigger_id", "created_at"),
        Index("ix_builds_rule_ref_state", "rule_id", "ref", "state"),
        # the history page's filters, newest first (migration 0006)
        Index("ix_builds_state_id", "state", "id"),
        Index("ix_builds_trigger_id_id", "trigger_id", "id"),
        Index("ix_builds_repository_id", "repository", "id"),
        Index("ix_builds_ref_name_id", "ref_name", "id"),
        Index("ix_builds_overview", "created_at", "state", "started_at", "finished_at"),
        Index("ix_builds_pull_request_id", "pull_request", "id"),
    )


class BuildLogLine(Base):
    __tablename__ = "build_log_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    build: Mapped[Build] = relationship(back_populates="log_lines")

    __table_args__ = (UniqueConstraint("build_id", "seq", name="uq_build_log_lines_build_seq"),)


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

    __table_args__ = (Index("ix_deploy_rules_repository", "repository"),)


class DeployTarget(Base):
    __tablename__ = "deploy_targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("deploy_rules.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "webhook" | "docker"
    url_enc: Mapped[str | None] = mapped_column(Text)  # the webhook URL, sealed (builder/outbound_urls.py)
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


class AuditEntry(Base):
    """Who did what: approvals, promotions, rollbacks, changes to triggers, rules, users, tokens."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Subscription(Base):
    """Someone who wants build, image and deployment events as webhooks."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    url_enc: Mapped[str] = mapped_column(Text)  # the URL, sealed (builder/outbound_urls.py)
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
    url_enc: Mapped[str] = mapped_column(Text)  # the URL, sealed (builder/outbound_urls.py)
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


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # "admin" | "viewer"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A token for scripts: shown once, stored as a SHA-256 hash, revocable."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class SignInSession(Base):
    """A signed-in browser: the cookie carries a random token, the row its SHA-256 hash. Deleting the
    row (sign-out, a new password, the user's removal) ends the session at once."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """Recent failed sign-ins of one account name (``kind`` "account") or one client address
    ("address"): the count behind the sign-in backoff (builder/sign_in_throttle.py)."""

    __tablename__ = "login_failures"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class RetentionDeletion(Base):
    """Something retention deleted (or tried to): a registry tag or manifest (``builder/retention.py``),
    or old build logs and deliveries (``count`` rows, ``builder/pruning.py``)."""

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
    )
