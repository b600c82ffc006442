"""multi-platform builds: a rule's platforms, and the platforms a build was built for

``trigger_rules.platforms`` (JSON list of ``os/arch[/variant]``, NULL: the engine's own
platform) and ``builds.platforms`` (what the build built; its digest is then an OCI image
index's). See builder/builds/image/platforms.py.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trigger_rules") as batch:
        batch.add_column(sa.Column("platforms", sa.JSON(), nullable=True))
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("platforms", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("platforms")
    with op.batch_alter_table("trigger_rules") as batch:
        batch.drop_column("platforms")
