"""`etl migrate`: create the replica and analytics databases when missing, then upgrade both
tracking-table lineages with Alembic.

The two databases are two independent Alembic lineages (sections ``[mysql]`` and ``[postgres]`` of
``alembic.ini``): MySQL DDL is not transactional, so neither database waits on the other.
Later phases call :func:`check_up_to_date` before they write, so an old tracking schema is
reported as "run `etl migrate`" instead of as a failed INSERT.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from etl.resources import DATA_ROOT
from etl.dialects import for_url, mysql
from etl.errors import ConfigError, ConnectionFailed, SchemaError, first_line
from etl.render import Ident
from etl.settings import Settings, mask_url

log = logging.getLogger(__name__)

ALEMBIC_INI = DATA_ROOT / "alembic.ini"
#: side of the pipeline -> section of alembic.ini (one lineage each)
SECTIONS = {"replica": "mysql", "analytics": "postgres"}


def migrate(settings: Settings, revision: str = "head") -> list[str]:
    """Create what is missing and upgrade both databases; returns one line per database for the CLI."""
    if settings.same_mysql_server() and settings.replica_url.database == settings.source_url.database:
        raise ConfigError("settings ETL_REPLICA_URL and ETL_SOURCE_URL name the same database "
                          f"{mask_url(settings.replica_url)}: the tracking tables never go into the source")
    lines = []
    for side in SECTIONS:
        notes = ["created"] if _ensure_database(settings, side) else []
        if side == "analytics" and _ensure_schema(settings):
            notes.append(f"schema {settings.raw_schema} created")
        lines.append(_run(settings, side, "upgraded", command.upgrade, revision, notes))
    return lines


def downgrade(settings: Settings, revision: str) -> list[str]:
    """Downgrade both databases (tests, and undoing a bad release); the databases must exist."""
    return [_run(settings, side, "downgraded", command.downgrade, revision, []) for side in SECTIONS]


def current_revisions(settings: Settings) -> dict[str, str | None]:
    """{"replica": revision or None, "analytics": ...}; None when nothing was migrated yet."""
    current = {}
    for side in SECTIONS:
        with engine_for(settings, side).connect() as conn:
            current[side] = _current(conn, settings, side)
    return current


def head_revisions() -> dict[str, str]:
    """The revision each lineage of this code base ends at."""
    return {side: ScriptDirectory.from_config(alembic_config(side)).get_current_head() for side in SECTIONS}


def check_up_to_date(settings: Settings) -> None:
    """Raise SchemaError unless both databases are at the head revision of their lineage."""
    heads = head_revisions()
    for side, current in current_revisions(settings).items():
        if current != heads[side]:
            raise SchemaError(
                f"the tracking schema of the {side} database {mask_url(_url(settings, side))} is at revision "
                f"{current or 'none'}, the code needs {heads[side]}: run `etl migrate`"
            )


def alembic_config(side: str, *, connection: Connection | None = None, raw_schema: str | None = None) -> Config:
    """The Alembic config of one lineage; a connection handed in is used (and committed) by the caller,
    and ``raw_schema`` overrides ETL_RAW_SCHEMA for the PostgreSQL lineage."""
    config = Config(str(ALEMBIC_INI), ini_section=SECTIONS[side])
    if connection is not None:
        config.attributes["connection"] = connection
    if raw_schema is not None:
        config.attributes["raw_schema"] = raw_schema
    return config


def engine_for(settings: Settings, side: str) -> Engine:
    """An engine for Alembic whose connections come from etl.db: migrations get the ETL's own session
    setup (UTC, utf8mb4) and a connection failure is a ConnectionFailed with the URL masked.
    The URL itself only selects the dialect, so its password is never rendered."""
    url = _url(settings, side)
    return sa.create_engine(url, creator=lambda: _dialect(settings, side).connect(url, role=side), poolclass=NullPool)


def _url(settings: Settings, side: str) -> URL:
    return settings.replica_url if side == "replica" else settings.analytics_url


def _dialect(settings: Settings, side: str):
    return mysql if side == "replica" else for_url(settings.analytics_url)


def _schema(settings: Settings, side: str) -> str | None:
    """Where the lineage keeps its version table: the raw schema on PostgreSQL, the database on MySQL."""
    return settings.raw_schema if side == "analytics" else None


def _current(conn: Connection, settings: Settings, side: str) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table_schema": _schema(settings, side)})
    return context.get_current_revision()


def _run(settings: Settings, side: str, verb: str, action, revision: str, notes: list[str]) -> str:
    """Run one Alembic command on one database inside one transaction and describe what changed."""
    url = _url(settings, side)
    try:
        with engine_for(settings, side).begin() as conn:
            before = _current(conn, settings, side)
            action(alembic_config(side, connection=conn, raw_schema=_schema(settings, side)), revision)
            after = _current(conn, settings, side)
    except (CommandError, sa.exc.DBAPIError) as exc:
        reason = first_line(getattr(exc, "orig", None) or exc)
        raise SchemaError(f"migrating the {side} database {mask_url(url)} to {revision}: {reason}") from exc
    if before == after:
        notes.append(f"already at {after or 'base'}")
    elif before is None:
        notes.append(f"{verb} to {after}")
    else:
        notes.append(f"{verb} {before} -> {after or 'base'}")
    line = f"{side} {url.database}: {', '.join(notes)}"
    log.debug(line)  # the caller prints it (etl migrate): once
    return line


def _ensure_database(settings: Settings, side: str) -> bool:
    """Create the database when it cannot be reached; True when created.

    Connecting first means a role that may use an existing database but not create one still
    migrates. If the database turns out to exist, the first connection failure is the real error.
    """
    url, dialect = _url(settings, side), _dialect(settings, side)
    try:
        dialect.connect(url, role=side).close()
        return False
    except ConnectionFailed as exc:
        unreachable = exc
    try:
        created = dialect.create_database(url, Ident(url.database), role=side)
    except ConnectionFailed:
        raise
    except Exception as exc:
        raise ConnectionFailed(f"{unreachable}; creating it failed: {first_line(exc)}") from None
    if not created:
        raise unreachable
    return True


def _ensure_schema(settings: Settings) -> bool:
    """Create the raw schema when missing; True when created. Checked first, because CREATE SCHEMA
    IF NOT EXISTS still needs the CREATE privilege on the database."""
    with engine_for(settings, "analytics").begin() as conn:
        if sa.inspect(conn).has_schema(settings.raw_schema):
            return False
        _dialect(settings, "analytics").create_schema(conn, settings.raw_schema)
    return True
