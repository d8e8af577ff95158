"""etl_copy_rejects: rows the copy could not move, retried on every run until they do.

Revision ID: 0005_copy_rejects
Revises: 0004_widen_rows

The row-by-row copy (separate servers, local_infile off) cannot build on the replica a single value
longer than its max_allowed_packet: no statement makes a longer value. Such a row is recorded here
instead of failing its table for good; its key (the primary key's values as a JSON array) is read
again at the start of every copy run of the table. Once it moved, ``moved_at`` says so until the load
has taken it to raw (it reloads the table: the row's watermark values lie behind the load's), then the
entry goes.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005_copy_rejects"
down_revision = "0004_widen_rows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "etl_copy_rejects",
        sa.Column("table_name", sa.String(255), primary_key=True),
        sa.Column("key_value", sa.String(255), primary_key=True),
        sa.Column("column_name", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("setting", sa.String(255), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("first_seen", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("last_tried", mysql.DATETIME(fsp=6), nullable=False),
        sa.Column("moved_at", mysql.DATETIME(fsp=6)),
        mysql_engine="InnoDB", mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("etl_copy_rejects")
