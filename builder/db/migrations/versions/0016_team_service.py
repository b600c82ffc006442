"""a team's service: fair sharing, schedules, retention

``triggers.max_concurrent`` (builds of the trigger running at once; null: no limit),
``triggers.schedule`` (a cron expression, UTC) and ``triggers.schedule_next_at`` (the next
due time: a worker claims it with a conditional UPDATE, so it fires once); ``builds.scheduled_for``
(the due time of a scheduled build); ``trigger_rules.rebuild`` ("always": a schedule rebuilds an
unchanged commit) and ``trigger_rules.retention_keep`` (per-commit tags kept); ``retention_deletions``
records every deletion (registry tags and manifests, old logs and deliveries).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-10
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_concurrent", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("schedule", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("schedule_next_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rebuild", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("retention_keep", sa.Integer(), nullable=True))
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "retention_deletions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("trigger_id", sa.Integer(), nullable=True),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("build_id", sa.Integer(), nullable=True),
        sa.Column("repository", sa.String(length=512), nullable=True),
        sa.Column("tag", sa.String(length=128), nullable=True),
        sa.Column("digest", sa.String(length=128), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["trigger_id"], ["triggers.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["rule_id"], ["trigger_rules.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["build_id"], ["builds.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retention_deletions_build_tag", "retention_deletions", ["build_id", "tag"])
    op.create_index("ix_retention_deletions_at", "retention_deletions", ["at"])


def downgrade() -> None:
    op.drop_index("ix_retention_deletions_at", table_name="retention_deletions")
    op.drop_index("ix_retention_deletions_build_tag", table_name="retention_deletions")
    op.drop_table("retention_deletions")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("scheduled_for")
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.drop_column("retention_keep")
        batch_op.drop_column("rebuild")
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.drop_column("schedule_next_at")
        batch_op.drop_column("schedule")
        batch_op.drop_column("max_concurrent")
