"""indexes for the dashboard: history filters, the overview, a trigger's deliveries, outbound deliveries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Each history filter gets an index that starts with its column and ends with the id, so
``WHERE <column> = ? AND id < ? ORDER BY id DESC LIMIT 51`` reads one page of index
entries whatever the number of builds (SQLite and PostgreSQL alike).
"""
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

INDEXES = {
    'builds': [
        ('ix_builds_state_id', ['state', 'id']),
        ('ix_builds_trigger_id_id', ['trigger_id', 'id']),
        ('ix_builds_repository_id', ['repository', 'id']),
        ('ix_builds_ref_name_id', ['ref_name', 'id']),
        # the overview reads only these columns of a time window: an index-only scan
        ('ix_builds_overview', ['created_at', 'state', 'started_at', 'finished_at']),
    ],
    'deliveries': [
        ('ix_deliveries_trigger_id_id', ['trigger_id', 'id']),
        ('ix_deliveries_provider_repository_id', ['provider', 'repository', 'id']),
    ],
    'outbound_deliveries': [
        ('ix_outbound_deliveries_build', ['build_id']),
        ('ix_outbound_deliveries_deployment', ['deployment_id']),
        ('ix_outbound_deliveries_state_id', ['state', 'id']),
    ],
}


def upgrade() -> None:
    for table, indexes in INDEXES.items():
        for name, columns in indexes:
            op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for table, indexes in INDEXES.items():
        for name, _columns in reversed(indexes):
            op.drop_index(name, table_name=table)
