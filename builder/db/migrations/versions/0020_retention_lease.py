"""one worker at a time prunes a rule's tags

``trigger_rules.retention_lease_until``: while a worker deletes a rule's expired tags, until when its
lease holds (builder/registries/retention.py). Two builds of one rule that succeed together no longer
both delete the same tags and record each deletion twice.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention_lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.drop_column("retention_lease_until")
