"""Incremental, tracked ETL for OpenDental: source MySQL -> replica MySQL -> PostgreSQL `raw` -> dbt."""

from pathlib import Path

__version__ = "0.1.0"

#: Repository root; the SQL templates, migrations and alembic.ini live beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
