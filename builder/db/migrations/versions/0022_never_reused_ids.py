"""ids of triggers, deploy rules, API tokens and subscriptions are never given again on SQLite

SQLite gives the next row the highest rowid + 1, so deleting the newest trigger handed its id to the
next one: its metrics (``trigger`` label), badge, page URL and audit entries then named two triggers.
``AUTOINCREMENT`` (``sqlite_autoincrement``) keeps a high-water mark in ``sqlite_sequence`` instead.
The tables are copied (batch mode; env.py turns foreign keys off meanwhile, so no row that refers to
them changes). PostgreSQL's sequences never reuse an id: nothing to do there.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

TABLES = ("triggers", "deploy_rules", "api_tokens", "subscriptions")


def _recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    _recreate(True)


def downgrade() -> None:
    _recreate(False)
