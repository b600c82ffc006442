"""Inbound deliveries, builds and their log lines."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

if TYPE_CHECKING:  # relationships across modules resolve by name at mapping time
    from builder.db.models.triggers import Trigger

from builder.db.models.base import Base, UTCDateTime, utcnow


class BuildState(str, enum.Enum):
    QUEUED = "queued"
    CLONING = "cloning"
    BUILDING = "building"
    PUSHING = "pushing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # a path filter found nothing to build
    SUPERSEDED = "superseded"  # a newer push to the same ref and rule came first
    CANCELLED = "cancelled"  # someone cancelled it (builder/builds/actions.py)

    @property
    def finished(self) -> bool:
        return self not in (BuildState.QUEUED, BuildState.CLONING, BuildState.BUILDING, BuildState.PUSHING)


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
    # A redelivery to self of an accepted delivery (builder/intake/delivery_requests.py): which one.
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


_PULL_REQUESTS_ONLY = text("pull_request IS NOT NULL")  # ix_builds_pull_request_id's rows (migration 0024)


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
    # (builder/builds/run/reaper.py) requeues or fails a running build whose heartbeat is older than its TTL.
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
        Index("ix_builds_state_dispatched", "state", "dispatched_at"),
        Index("ix_builds_rule_ref_state", "rule_id", "ref", "state"),
        # intake follows the before -> commit chain of a push link by link (migration 0019)
        Index("ix_builds_rule_ref_commit", "rule_id", "ref", "commit"),
        Index("ix_builds_rule_ref_before", "rule_id", "ref", "before"),
        # the history page's filters, newest first (migration 0006)
        Index("ix_builds_state_id", "state", "id"),
        Index("ix_builds_trigger_id_id", "trigger_id", "id"),  # also serves what ix_builds_trigger_created did (0024)
        Index("ix_builds_repository_id", "repository", "id"),
        Index("ix_builds_ref_name_id", "ref_name", "id"),
        # also every query by created_at alone (migration 0024 dropped ix_builds_created_at)
        Index("ix_builds_overview", "created_at", "state", "started_at", "finished_at"),
        # only the builds of pull requests (0024): a push's build is written into one index fewer
        Index("ix_builds_pull_request_id", "pull_request", "id",
              sqlite_where=_PULL_REQUESTS_ONLY, postgresql_where=_PULL_REQUESTS_ONLY),
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
