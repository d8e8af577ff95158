"""The seam between the ETL and a database product: one module per database.

A dialect module (``mysql.py``, ``postgres.py``) owns everything that differs from one product to the next:

* ``NAME`` and ``render(statement, **context)``: its templates, ``sql_templates/<NAME>/<statement>.sql.j2``,
  with the same statement names in every folder (``run_history_insert``, ``table_is_empty``,
  ``reconcile_delete``, ``verify_buckets`` ...), so Python names a statement and never a path;
* ``connect(url, role=...)`` with its session setup, ``first_line``-friendly errors, and
  ``is_transient(exc)`` (which of its errors are worth another attempt);
* ``acquire_lock(conn, name, timeout)``: the mechanism of a per-table lock (etl/locks.py decides which
  database holds which lock);
* ``scope(raw_schema)`` and ``ASSIGNS_HISTORY_IDS``: where the ETL's own tables are in it (its copies and
  its tracking), and how a run-history row gets its id (etl/tracking.py writes them);
* ``map_table(schema)``: how a source column maps into it (its type map) and the bulk text it takes
  (PostgreSQL: COPY text; MySQL: LOAD DATA infile text), as columns the templates read;
* ``key_list(keys)``: a list of keys as its driver binds it.

A new target (DuckDB, a cloud warehouse) adds ``etl/dialects/<name>.py``, ``sql_templates/<name>/`` with the
statement names of ``sql_templates/postgres/``, a bulk-text macro under ``sql_templates/_macros/`` rendered
by the MySQL replica, and a ``migrations_<name>/`` Alembic lineage; see README, *Layout*.
"""

from __future__ import annotations

from types import ModuleType

from sqlalchemy.engine import URL

from etl.dialects import mysql, postgres

#: URL driver name prefix -> dialect module
BY_DRIVER = {"mysql": mysql, "postgresql": postgres}


def for_url(url: URL) -> ModuleType:
    """The dialect module of a database URL (settings.py accepts only the drivers listed here)."""
    for prefix, module in BY_DRIVER.items():
        if url.drivername.startswith(prefix):
            return module
    raise ValueError(f"no dialect for driver {url.drivername!r}")
