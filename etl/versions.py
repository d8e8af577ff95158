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
