"""pull and merge requests

``trigger_rules.source`` grows to 16 characters (``pull_request``). ``trigger_rules.push``, ``.forks``, ``.cancel_running``: a rule's push (false by default for
``pull_request`` rules), whether it trusts forks, and whether a newer commit cancels its running
build. ``builds.pull_request``, ``.base_branch``, ``.fork``, ``.push``: a request's build.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.alter_column("source", existing_type=sa.String(length=8), type_=sa.String(length=16))
        batch_op.add_column(sa.Column("push", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("forks", sa.String(length=16), nullable=False, server_default="untrusted"))
        batch_op.add_column(sa.Column("cancel_running", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pull_request", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("base_branch", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("fork", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("push", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.create_index("ix_builds_pull_request_id", ["pull_request", "id"])


def downgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index("ix_builds_pull_request_id")
        for column in ("push", "fork", "base_branch", "pull_request"):
            batch_op.drop_column(column)
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        for column in ("cancel_running", "forks", "push"):
            batch_op.drop_column(column)
    op.execute("DELETE FROM trigger_rules WHERE source = 'pull_request'")
    with op.batch_alter_table("trigger_rules", schema=None) as batch_op:
        batch_op.alter_column("source", existing_type=sa.String(length=16), type_=sa.String(length=8))
