"""outbound URLs sealed, shown redacted

``subscriptions``, ``deploy_targets`` and ``outbound_deliveries`` lose ``url``
(in clear: a Slack URL's path, a ``?token=`` or a ``user:pass@`` is a secret)
for ``url_enc`` (sealed with BUILDHOOK_SECRET_KEY, builder/secrets.py) and
``url_redacted`` (``builder.notify.urls.redact_url``, what is shown). Existing
rows are sealed with the key given to ``builder.db.engine.migrate``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

from builder.notify.urls import redact_url
from builder.secrets import SecretBox

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = (("subscriptions", False), ("deploy_targets", True), ("outbound_deliveries", False))  # (name, nullable)


def _box(connection: sa.Connection, table: str, column: str) -> SecretBox | None:
    """The secret box, or None when ``table`` has no row to convert; an error when one is needed and
    no key was given."""
    if connection.execute(sa.text(f"SELECT 1 FROM {table} WHERE {column} IS NOT NULL LIMIT 1")).first() is None:
        return None
    key = op.get_context().config.attributes.get("secret_key")
    if not key:
        raise RuntimeError(f"migration 0011 seals the outbound URLs stored in {table} and needs the secret key: "
                           "run `buildhook migrate` with BUILDHOOK_SECRET_KEY (or the data directory's key)")
    return SecretBox(key)


def upgrade() -> None:
    connection = op.get_bind()
    boxes = {table: _box(connection, table, "url") for table, _nullable in TABLES}  # before any change
    for table, nullable in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("url_enc", sa.Text(), nullable=True))
            batch_op.add_column(sa.Column("url_redacted", sa.String(length=1024), nullable=True))
        box = boxes[table]
        if box is not None:
            rows = connection.execute(sa.text(f"SELECT id, url FROM {table} WHERE url IS NOT NULL")).fetchall()
            connection.execute(sa.text(f"UPDATE {table} SET url_enc = :enc, url_redacted = :shown WHERE id = :id"),
                               [{"id": row_id, "enc": box.seal(url), "shown": redact_url(url)} for row_id, url in rows])
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("url")
            if not nullable:
                batch_op.alter_column("url_enc", existing_type=sa.Text(), nullable=False)
                batch_op.alter_column("url_redacted", existing_type=sa.String(length=1024), nullable=False)


def downgrade() -> None:
    connection = op.get_bind()
    boxes = {table: _box(connection, table, "url_enc") for table, _nullable in TABLES}  # before any change
    for table, nullable in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("url", sa.String(length=1024), nullable=True))
        box = boxes[table]
        if box is not None:
            rows = connection.execute(sa.text(f"SELECT id, url_enc FROM {table} WHERE url_enc IS NOT NULL")).fetchall()
            connection.execute(sa.text(f"UPDATE {table} SET url = :url WHERE id = :id"),
                               [{"id": row_id, "url": box.open(enc)} for row_id, enc in rows])
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("url_enc")
            batch_op.drop_column("url_redacted")
            if not nullable:
                batch_op.alter_column("url", existing_type=sa.String(length=1024), nullable=False)
