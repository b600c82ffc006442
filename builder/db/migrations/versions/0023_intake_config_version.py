"""a version number for what webhook intake reads of triggers, their rules and subscriptions

``intake_config_version`` holds one row; database triggers on ``triggers``, ``trigger_rules`` and
``subscriptions`` add one to it for each row inserted, deleted, or updated in a column intake reads,
in the writer's transaction, whoever writes. The web process keeps those tables' rows for intake
while the number stays the same (``IntakeConfig`` in builder/triggers/lookup.py).

SQLite drops a table's triggers when a batch migration copies the table: a later migration that
does so must create them again, as must one that makes intake read another column
(tests/builder/triggers/test_intake_config.py checks both at head).

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

# What webhook intake reads of each table (HookTrigger, HookRule, the subscriptions' listeners in
# builder/triggers/lookup.py): an UPDATE that sets none of these (a retention lease, a schedule's
# next run) changes nothing intake kept and bumps nothing.
READ_BY_INTAKE = {
    "triggers": ("provider", "repository", "clone_url", "secret_enc", "image", "default_branch", "enabled",
                 "supersede", "status_token_enc"),
    "trigger_rules": ("trigger_id", "position", "source", "match", "pattern", "dockerfile", "context",
                      "build_args", "target", "tags", "included_files", "ignored_files", "push", "forks",
                      "cancel_running"),
    "subscriptions": ("events", "trigger_id", "enabled"),
}
BUMP = "UPDATE intake_config_version SET version = version + 1"


def _columns(table: str) -> str:
    return ", ".join(f'"{column}"' for column in READ_BY_INTAKE[table])


def create_bumps() -> None:
    """The triggers that bump the version: per row inserted, deleted, or updated in a column intake reads."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION intake_config_changed() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        for table in READ_BY_INTAKE:
            op.execute(f"CREATE TRIGGER intake_config_{table} AFTER INSERT OR DELETE OR UPDATE OF {_columns(table)} "
                       f"ON {table} FOR EACH ROW EXECUTE FUNCTION intake_config_changed()")
        return
    for table in READ_BY_INTAKE:
        for change in ("INSERT", "DELETE", f"UPDATE OF {_columns(table)}"):
            name = f"intake_config_{table}_{change.split()[0].lower()}"
            op.execute(f"CREATE TRIGGER {name} AFTER {change} ON {table} BEGIN {BUMP}; END")


def drop_bumps() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in READ_BY_INTAKE:
            op.execute(f"DROP TRIGGER IF EXISTS intake_config_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS intake_config_changed()")
        return
    for table in READ_BY_INTAKE:
        for change in ("insert", "delete", "update"):
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
