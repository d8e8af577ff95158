"""Where the product's files are: the SQL templates, both Alembic lineages with alembic.ini, the dbt
project (with the etl_tracking package) and the demo catalog.

In a checkout they keep the repository's documented layout beside the package (``sql_templates/``,
``migrations_mysql/``, ``migrations_postgres/``, ``alembic.ini``, ``dbt/``). A built wheel carries copies
of them as package data under ``etl/_data/`` (setup.py maps them there at build time), found here
through importlib.resources, so an installed ``etl`` never looks for a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _data_root() -> tuple[Path, bool]:
    package = Path(str(resources.files("etl")))
    shipped = package / "_data"
    if (shipped / "sql_templates").is_dir():
        return shipped, True
    return package.resolve().parent, False


#: The folder holding sql_templates/, migrations_mysql/, migrations_postgres/, alembic.ini and dbt/;
#: INSTALLED: it is the package data of an installed wheel (not a checkout).
DATA_ROOT, INSTALLED = _data_root()


def package_file(name: str, package: str = "etl") -> Path:
    """A data file shipped inside a package of etl (the demo catalog: etl/tools/demo_tables.yml)."""
    return Path(str(resources.files(package) / name))
