"""what inbound deliveries carried; redeliveries to self

``delivery_requests``: a delivery's request headers (signature headers and tokens replaced by
****) and body (capped, with its full size), one row per delivery, written in the intake's
transaction. ``deliveries.redelivery_of``: the accepted delivery a redelivery to self repeats.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_requests",
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("redelivery_of", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_deliveries_redelivery_of", "deliveries", ["redelivery_of"], ["id"],
                                    ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("fk_deliveries_redelivery_of", type_="foreignkey")
        batch_op.drop_column("redelivery_of")
    op.drop_table("delivery_requests")
