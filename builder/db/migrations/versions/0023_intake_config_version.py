"""a version number for what webhook intake reads of triggers, their rules and subscriptions

``intake_config_version`` holds one row; a database trigger on ``triggers``, ``trigger_rules`` and
``subscriptions`` adds one to it in every transaction that changes them, whoever writes. The web
process keeps those tables' rows for intake while the number stays the same (``IntakeConfig`` in
builder/triggers/lookup.py). SQLite drops a table's triggers when a batch migration copies the
table: a later migration that does so must run ``create_bumps`` again.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

TABLES = ("triggers", "trigger_rules", "subscriptions")
BUMP = "UPDATE intake_config_version SET version = version + 1"


def create_bumps() -> None:
    """The triggers that bump the version (on SQLite, one per table and kind of change)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION intake_config_changed() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        for table in TABLES:
            op.execute(f"CREATE TRIGGER intake_config_{table} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION intake_config_changed()")
        return
    for table in TABLES:
        for change in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER intake_config_{table}_{change.lower()} AFTER {change} ON {table} "
                       f"BEGIN {BUMP}; END")


def drop_bumps() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS intake_config_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS intake_config_changed()")
        return
    for table in TABLES:
        for change in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS intake_config_{table}_{change}")


def upgrade() -> None:
    version = op.create_table(
        "intake_config_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])
    create_bumps()


def downgrade() -> None:
    drop_bumps()
    op.drop_table("intake_config_version")
