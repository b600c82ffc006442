"""a build's page finds its manifest's deletion by digest

``ix_retention_deletions_digest``: builds of the same image share one manifest, and whichever build's expired
tag took it, each build's page says it can no longer be pulled (builder/registries/retention_records.py).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_retention_deletions_digest", "retention_deletions", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_retention_deletions_digest", table_name="retention_deletions")
