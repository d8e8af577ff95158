"""rows_loaded and rows_transformed become BIGINT: INTEGER overflows on the biggest tables.

Revision ID: 0004_widen_rows
Revises: 0003_column_status

Downgrade narrows back (and fails if a count no longer fits in INTEGER).
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_widen_rows"
down_revision = "0003_column_status"
branch_labels = None
depends_on = None

COLUMNS = {"etl_load_status": "rows_loaded", "etl_transform_status": "rows_transformed"}


def upgrade() -> None:
    for table, column in COLUMNS.items():
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                        existing_nullable=True, existing_server_default="0",
                        schema=op.get_context().version_table_schema)


def downgrade() -> None:
    for table, column in COLUMNS.items():
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                        existing_nullable=True, existing_server_default="0",
                        schema=op.get_context().version_table_schema)
