"""A fast answer to "are both tracking schemas at the code's head revision?", without importing Alembic.

Every `etl` command that moves data checks this first (etl.runner.preflight). The full check
(etl.migrate.check_up_to_date) imports Alembic and SQLAlchemy's engine machinery, ~0.2 s of a process
whose useful work may take less than that (an incremental run of a small table). This module reads each
lineage's head from the revision files (``revision = "..."`` / ``down_revision = "..."``) and the
current revision from the version table with the ETL's own connections. Only a clear "yes" is answered
here; anything else (behind, ahead, several heads, an unreadable file, no version table) goes to the full
check, which raises the precise error.
"""

from __future__ import annotations

import re
from pathlib import Path

from etl.resources import DATA_ROOT
from etl.db import fetch_one
from etl.dialects import for_url, mysql
from etl.render import Ident
from etl.settings import Settings

#: side of the pipeline -> folder of its lineage (alembic.ini's script_location)
LINEAGES = {"replica": DATA_ROOT / "migrations_mysql", "analytics": DATA_ROOT / "migrations_postgres"}
_REVISION = re.compile(r"""^revision\s*=\s*["']([^"']+)["']""", re.MULTILINE)
_DOWN = re.compile(r"""^down_revision\s*=\s*(?:["']([^"']+)["']|None)""", re.MULTILINE)


def head(folder: Path) -> str | None:
    """The single head of a lineage read from its revision files, or None when that is not clear-cut."""
    revisions, parents = set(), set()
    for path in sorted((folder / "versions").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN.search(text)
        if revision is None or down is None:
            return None  # merge revisions, tuples, generated code: leave it to Alembic
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current(settings: Settings, side: str) -> str | None:
    """The revision stamped in one database's version table (None when there is none to read)."""
    try:
        if side == "replica":
            conn = mysql.connect(settings.replica_url, role="replica")
            statement = mysql.render("alembic_version")
        else:
            target = for_url(settings.analytics_url)
            conn = target.connect(settings.analytics_url)
            statement = target.render("alembic_version", schema=Ident(settings.raw_schema))
    except Exception:
        return None
    try:
        row = fetch_one(conn, statement)
        return row[0] if row else None
    except Exception:  # no version table yet, no permission: the full check says what is wrong
        return None
    finally:
        conn.close()


def up_to_date(settings: Settings) -> bool:
    """True when both databases are certainly at the head of their lineage; False means "ask Alembic"."""
    for side, folder in LINEAGES.items():
        expected = head(folder)
        if expected is None or current(settings, side) != expected:
            return False
    return True


_MISSING_DATABASE = re.compile(r"Unknown database|database \"[^\"]*\" does not exist", re.IGNORECASE)
SIDES = {"replica": "ETL_REPLICA_URL", "analytics": "ETL_ANALYTICS_URL"}


def require(settings: Settings, sides: tuple[str, ...] = ("replica", "analytics")) -> None:
    """Before a command reads or writes the tracking tables: each side's database exists and its tracking
    schema is at the head of its lineage, else one line ending in "run `etl migrate`" (instead of a raw
    "table doesn't exist" from the driver, or a report of nothing). A database that cannot be reached for
    another reason is that ConnectionFailed."""
    from etl.errors import ConnectionFailed, SchemaError
    from etl.settings import mask_url

    unclear = False
    for side in sides:
        url = settings.replica_url if side == "replica" else settings.analytics_url
        try:
            if side == "replica":
                conn = mysql.connect(url, role="replica")
                statement = mysql.render("alembic_version")
            else:
                target = for_url(url)
                conn = target.connect(url)
                statement = target.render("alembic_version", schema=Ident(settings.raw_schema))
        except ConnectionFailed as exc:
            if _MISSING_DATABASE.search(str(exc)):
                raise SchemaError(f"the {side} database {mask_url(url)} ({SIDES[side]}) does not exist yet: "
                                  f"run `etl migrate`") from None
            raise
        try:
            row = fetch_one(conn, statement)
        except Exception:  # no version table: never migrated
            row = None
        finally:
            conn.close()
        found, expected = (row[0] if row else None), head(LINEAGES[side])
        if expected is None:
            unclear = True
        elif found != expected:
            raise SchemaError(f"the tracking schema of the {side} database {mask_url(url)} is at revision "
                              f"{found or 'none'}, the code needs {expected}: run `etl migrate`")
    if unclear:  # a lineage whose head the files do not say plainly: Alembic decides
        from etl.migrate import check_up_to_date
        check_up_to_date(settings)
