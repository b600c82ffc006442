"""three fewer index entries for every build webhook intake writes

``ix_builds_created_at`` repeated the first column of ``ix_builds_overview`` (``created_at``, ``state``,
``started_at``, ``finished_at``), which serves every query the other served; ``ix_builds_trigger_created``
(``trigger_id``, ``created_at``, from the first schema) is served by ``ix_builds_trigger_id_id`` (0006: no
query orders a trigger's builds by ``created_at``); ``ix_builds_pull_request_id``
now holds only the builds of pull requests (a partial index: pushes, most builds, have no number), and
still serves every lookup by number. Each index a build is written into costs intake CPU under the
database's write lock (issue 19, bench/README.md).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

PULL_REQUESTS_ONLY = sa.text("pull_request IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_builds_created_at", table_name="builds")
    op.drop_index("ix_builds_trigger_created", table_name="builds")
    op.drop_index("ix_builds_pull_request_id", table_name="builds")
    op.create_index("ix_builds_pull_request_id", "builds", ["pull_request", "id"],
                    sqlite_where=PULL_REQUESTS_ONLY, postgresql_where=PULL_REQUESTS_ONLY)


def downgrade() -> None:
    op.drop_index("ix_builds_pull_request_id", table_name="builds")
    op.create_index("ix_builds_pull_request_id", "builds", ["pull_request", "id"])
    op.create_index("ix_builds_trigger_created", "builds", ["trigger_id", "created_at"])
    op.create_index("ix_builds_created_at", "builds", ["created_at"])
