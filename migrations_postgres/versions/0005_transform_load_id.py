"""etl_transform_status.last_load_id: the last load (run-history id) whose rows the transform has taken.

Revision ID: 0005_transform_load_id
Revises: 0004_widen_rows

The transform phase selects raw rows by the load that wrote them (``raw.<table>._etl_load_id``), not by
a source timestamp, so a row loaded late with an old timestamp is never skipped. This column is the lower
bound of the next transform of the table (exclusive); NULL means "never transformed: take every row".
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_transform_load_id"
down_revision = "0004_widen_rows"
branch_labels = None
depends_on = None

TABLE = "etl_transform_status"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("last_load_id", sa.BigInteger, nullable=True),
                  schema=op.get_context().version_table_schema)


def downgrade() -> None:
    op.drop_column(TABLE, "last_load_id", schema=op.get_context().version_table_schema)
