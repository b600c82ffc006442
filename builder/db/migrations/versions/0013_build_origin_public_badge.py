"""what started a build; public status badges

``builds.origin`` (``push``, ``manual``, ``rebuild``, ``schedule``), ``builds.started_by`` (the
person who ran or rebuilt it) and ``builds.rebuild_of`` (the build a rebuild repeats);
``triggers.public_badge``: its ``/badge/<trigger>.svg`` answers without sign-in.
Existing builds: those of a manual run's delivery are ``manual``, those without a delivery
(rebuilds, whose builder did not record more) ``rebuild``, the rest ``push``.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(16), nullable=False, server_default="push"))
        batch_op.add_column(sa.Column("started_by", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("rebuild_of", sa.Integer(), nullable=True))
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_badge", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE builds SET origin = 'rebuild' WHERE delivery_id IS NULL")
    op.execute("UPDATE builds SET origin = 'manual' WHERE delivery_id IN "
               "(SELECT id FROM deliveries WHERE event = 'manual')")


def downgrade() -> None:
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.drop_column("public_badge")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("rebuild_of")
        batch_op.drop_column("started_by")
        batch_op.drop_column("origin")
