"""etl_deleted_keys: the keys the load deleted from raw, so the dbt models built on a table delete them too.

Revision ID: 0006_deleted_keys
Revises: 0005_transform_load_id

Incremental models only ever add and update: a row that `etl reconcile` or the deletedobject feed deletes
from ``raw.<table>`` would stay in them for good. Each such delete is recorded here in the transaction
that deletes the rows (etl/tracking.py), under the run-history id of the run that deleted it (``load_id``:
a load for the feed, a reconcile run for reconcile). The transform takes the keys recorded inside a
model's window of run ids (after, through] and deletes them from the model (the dbt macro
``etl_apply_deletes``); ``deleted_at`` is informational only.
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_deleted_keys"
down_revision = "0005_transform_load_id"
branch_labels = None
depends_on = None

TABLE = "etl_deleted_keys"


def upgrade() -> None:
    schema = op.get_context().version_table_schema
    op.create_table(
        TABLE,
        sa.Column("table_name", sa.String(255), nullable=False),
        sa.Column("load_id", sa.BigInteger, nullable=False),
        sa.Column("key_value", sa.BigInteger, nullable=False),
        sa.Column("key_column", sa.String(255), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("deleted_at", sa.DateTime, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.PrimaryKeyConstraint("table_name", "load_id", "key_value"),
        schema=schema,
    )
    # `etl verify` asks whether a key of a model is still waiting for its delete: by table and key.
    op.create_index("ix_etl_deleted_keys_table_name_key_value", TABLE, ["table_name", "key_value"], schema=schema)


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_index("ix_etl_deleted_keys_table_name_key_value", table_name=TABLE, schema=schema)
    op.drop_table(TABLE, schema=schema)
