"""the registry of each deploy rule

``deploy_rules.registry_host``: host[:port] of the registry whose images the rule deploys
(BUILDHOOK_REGISTRY or one of BUILDHOOK_TRUSTED_REGISTRIES). Rules made before have
NULL, read as BUILDHOOK_REGISTRY.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deploy_rules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registry_host", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deploy_rules", schema=None) as batch_op:
        batch_op.drop_column("registry_host")
