"""secret build args of trigger rules

``trigger_rules.secret_build_args_enc``: a rule's secret build args, JSON of
NAME -> the value encrypted with BUILDHOOK_SECRET_KEY (builder/builds/run/secret_args.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_build_args_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.drop_column("secret_build_args_enc")
