"""indexes for following a push's before -> commit chain

Webhook intake finds the builds of a ref linked to a new push (the build of its ``before``, and
those pushed on top of its commit) one link at a time instead of reading every queued build of
the ref: ``ix_builds_rule_ref_commit`` and ``ix_builds_rule_ref_before``.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_builds_rule_ref_commit", "builds", ["rule_id", "ref", "commit"])
    op.create_index("ix_builds_rule_ref_before", "builds", ["rule_id", "ref", "before"])


def downgrade() -> None:
    op.drop_index("ix_builds_rule_ref_before", table_name="builds")
    op.drop_index("ix_builds_rule_ref_commit", table_name="builds")
