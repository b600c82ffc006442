"""trigger rules, commit statuses, private repositories

Moves each trigger's Dockerfile and context into two default rules (every
branch: branch + short sha + latest; every tag: the tag), as buildhook built
before rules existed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DEFAULT_RULES = (
    ("branch", ["{branch}", "{short_sha}", "latest"]),
    ("tag", ["{tag}"]),
)


def upgrade() -> None:
    rules = op.create_table(
        "trigger_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trigger_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("match", sa.String(length=8), nullable=False),
        sa.Column("pattern", sa.String(length=1024), nullable=False),
        sa.Column("dockerfile", sa.String(length=1024), nullable=False),
        sa.Column("context", sa.String(length=1024), nullable=False),
        sa.Column("build_args", sa.JSON(), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("included_files", sa.JSON(), nullable=False),
        sa.Column("ignored_files", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["trigger_id"], ["triggers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trigger_id", "position", name="uq_trigger_rules_position"),
    )
    connection = op.get_bind()
    existing = connection.execute(sa.text("SELECT id, dockerfile, context FROM triggers")).fetchall()
    op.bulk_insert(rules, [
        {"trigger_id": trigger_id, "position": position, "source": source, "match": "glob",
         "pattern": "*", "dockerfile": dockerfile, "context": context, "build_args": {},
         "target": None, "tags": tags, "included_files": [], "ignored_files": []}
        for trigger_id, dockerfile, context in existing
        for position, (source, tags) in enumerate(DEFAULT_RULES)
    ])

    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("before", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("build_args", sa.JSON(), nullable=False, server_default=json.dumps({})))
        batch_op.add_column(sa.Column("target", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("included_files", sa.JSON(), nullable=False, server_default=json.dumps([])))
        batch_op.add_column(sa.Column("ignored_files", sa.JSON(), nullable=False, server_default=json.dumps([])))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.create_index("ix_builds_rule_ref_state", ["rule_id", "ref", "state"], unique=False)
        batch_op.create_foreign_key("fk_builds_rule_id", "trigger_rules", ["rule_id"], ["id"], ondelete="SET NULL")

    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("supersede", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("api_url", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("status_token_enc", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("clone_username", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("clone_token_enc", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("ssh_key_enc", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("ssh_known_hosts", sa.Text(), nullable=True))
        batch_op.drop_column("dockerfile")
        batch_op.drop_column("context")


def downgrade() -> None:
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context", sa.String(length=1024), nullable=False, server_default="."))
        batch_op.add_column(sa.Column("dockerfile", sa.String(length=1024), nullable=False,
                                      server_default="Dockerfile"))
        for column in ("ssh_known_hosts", "ssh_key_enc", "clone_token_enc", "clone_username",
                       "status_token_enc", "api_url", "supersede"):
            batch_op.drop_column(column)
    op.execute(
        "UPDATE triggers SET dockerfile = (SELECT r.dockerfile FROM trigger_rules r WHERE r.trigger_id = triggers.id "
        "ORDER BY r.position LIMIT 1), context = (SELECT r.context FROM trigger_rules r "
        "WHERE r.trigger_id = triggers.id ORDER BY r.position LIMIT 1) "
        "WHERE EXISTS (SELECT 1 FROM trigger_rules r WHERE r.trigger_id = triggers.id)"
    )
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_constraint("fk_builds_rule_id", type_="foreignkey")
        batch_op.drop_index("ix_builds_rule_ref_state")
        for column in ("reason", "ignored_files", "included_files", "target", "build_args", "before", "rule_id"):
            batch_op.drop_column(column)
    op.drop_table("trigger_rules")
