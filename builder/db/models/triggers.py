"""Triggers and their build rules."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

if TYPE_CHECKING:  # relationships across modules resolve by name at mapping time
    from builder.db.models.builds import Build

from builder.db.models.base import NEVER_REUSED_IDS, Base, UTCDateTime, utcnow


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
    # Builds of this trigger running at once (builder/builds/fair_share.py); None: no limit but the workers'.
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    # A cron expression (UTC) rebuilding the default branch's tip (builder/triggers/schedules.py), and its next
    # due time, claimed by one worker with a conditional UPDATE.
    schedule: Mapped[str | None] = mapped_column(String(255))
    schedule_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    builds: Mapped[list["Build"]] = relationship(back_populates="trigger")
    rules: Mapped[list["TriggerRule"]] = relationship(
        back_populates="trigger", order_by="TriggerRule.position", cascade="all, delete-orphan"
    )

    # Ids never come back after a delete (metrics labels, badges, URLs and the audit log name them): 0022.
    __table_args__ = (Index("ix_triggers_provider_repository", "provider", "repository"), NEVER_REUSED_IDS)


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
    # Secret build args: JSON {NAME: Fernet token of the value} (builder/builds/run/secret_args.py); merged
    # into the build args when a build runs, never copied into ``builds``, never shown but by name.
    secret_build_args_enc: Mapped[str | None] = mapped_column(Text)
    # {"command": [...], "timeout": seconds}: run in the pushed digest before any tag moves (builder/builds/image/test.py)
    test: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Pull requests (migration 0015): push the image (pull_request rules: false by default), trust
    # forks ("untrusted" | "trusted"), and cancel a running build when a newer commit comes.
    push: Mapped[bool] = mapped_column(default=True)
    forks: Mapped[str] = mapped_column(String(16), default="untrusted")
    cancel_running: Mapped[bool] = mapped_column(default=False)
    # "always": a scheduled run rebuilds an unchanged commit; None: it skips one already built.
    rebuild: Mapped[str | None] = mapped_column(String(16))
    # Per-commit tags kept in the registry (builder/registries/retention.py); None: all.
    retention_keep: Mapped[int | None] = mapped_column(Integer)
    # While a worker prunes the rule's tags: until when its lease holds (migration 0020); None: nobody.
    retention_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # ["linux/amd64", "linux/arm64"]: one image per platform and an OCI index (builder/builds/image/platforms.py); None: one
    platforms: Mapped[list[str] | None] = mapped_column(JSON)

    trigger: Mapped[Trigger] = relationship(back_populates="rules")

    __table_args__ = (UniqueConstraint("trigger_id", "position", name="uq_trigger_rules_position"),)


class IntakeConfigVersion(Base):
    """One row: a number that changes with every change to ``triggers``, ``trigger_rules`` or ``subscriptions``.

    Database triggers bump it, in the transaction that made the change (migration 0023), so no
    writer can forget to. Webhook intake keeps what it read of those tables while the number stays
    the same (``builder/triggers/lookup.py``: ``IntakeConfig``). SQLite drops a table's triggers
    when a batch migration copies the table: such a migration must create them again
    (``tests/builder/triggers/test_intake_config.py`` checks them at head).
    """

    __tablename__ = "intake_config_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
