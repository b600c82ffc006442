"""safe deploys: rule tests, environments, promotion, approval, rollback, the audit log

``trigger_rules.test``: the command run in the pushed digest before any tag moves.
``deploy_rules.auto``: false for rules that serve only promotions and rollbacks.
``deployments``: why each exists (``cause``: event, promotion, rollback; the deployment
whose digest it takes), who asked, who approved or rejected it and when.
``environments``: each environment's settings (``requires_approval``).
``audit_log``: who did what.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("test", sa.JSON(), nullable=True))
    with op.batch_alter_table("deploy_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auto", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        # "awaiting_approval" is 17 characters: the state column grows (PostgreSQL enforces the length).
        batch_op.alter_column("state", existing_type=sa.String(length=16), type_=sa.String(length=32),
                              existing_nullable=False)
        batch_op.add_column(sa.Column("cause", sa.String(length=16), nullable=False, server_default="event"))
        batch_op.add_column(sa.Column("source_deployment_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("requested_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("decided_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key("fk_deployments_source_deployment", "deployments", ["source_deployment_id"],
                                    ["id"], ondelete="SET NULL")
        batch_op.create_index("ix_deployments_environment_repository", ["environment", "repository", "id"])
    op.create_table(
        "environments",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("requires_approval", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("environments")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deployments_environment_repository")
        batch_op.drop_constraint("fk_deployments_source_deployment", type_="foreignkey")
        for column in ("decided_at", "decided_by", "requested_by", "source_deployment_id", "cause"):
            batch_op.drop_column(column)
        batch_op.alter_column("state", existing_type=sa.String(length=32), type_=sa.String(length=16),
                              existing_nullable=False)
    with op.batch_alter_table("deploy_rules", schema=None) as batch_op:
        batch_op.drop_column("auto")
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.drop_column("test")
