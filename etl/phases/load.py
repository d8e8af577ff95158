"""Load phase: replica MySQL -> PostgreSQL `raw`, tracked in raw.etl_load_status.

MySQL renders every row as a ready line of COPY text (mysql/load_select.sql.j2); Python only moves
bytes. The replica is read in one consistent snapshot together with the copy phase's watermark, which
bounds the read: the load never reads past what the copy committed. Everything the load writes in
PostgreSQL (DDL, data, tracking, run history) commits in one transaction: after a crash, all or nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from dataclasses import replace

from etl import progress, tracking, watermark
from etl.config import TableConfig
from etl.db import execute, fetch_one, mysql_connect, pg_connect
from etl.errors import SchemaError
from etl.faults import crash_point
from etl.phases.deletes import apply_deleted_objects
from etl.execute import RAW_TEXT_CONV, ChunkReader, capture_horizon, prefetch, read_blocks
from etl.phases.common import drift, resume_point, watermark_candidates
from etl.plan import Horizon, Plan, make_plan
from etl.render import Ident, render
from etl.schema import TableSchema, reflect_mysql_table, reflect_pg_columns
from etl.settings import Settings

log = logging.getLogger("etl.load")

HISTORY_TABLE = "etl_run_history"
#: Bytes psycopg2 asks the COPY feed for at a time (a block is handed over whole whatever this is).
COPY_CHUNK = 1 << 20
#: A full_table table this small (replica's row estimate) is staged and compared before raw is rewritten,
#: so an unchanged lookup table is not reloaded (and nothing downstream sees a load) on every run.
SMALL_TABLE = 100_000


def load_table(settings: Settings, config: TableConfig, run_id: str, *, full: bool = False,
               strategy: str | None = None) -> tracking.Outcome:
    replica = mysql_connect(settings.replica_url, role="replica", conv=RAW_TEXT_CONV)
    pg = pg_connect(settings.analytics_url)
    try:
        with replica.cursor() as cur:
            execute(cur, render("mysql/start_snapshot"))
        plan, target_exists, added = prepare(settings, replica, pg, config, full=full, strategy=strategy)
        outcome = tracking.Outcome(plan=plan, run_id=run_id,
                                   started_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
        outcome.notes.extend(plan.warnings)
        outcome.history_id = fetch_one(pg, render("postgres/next_run_id"), {
            "history_table": f"{settings.raw_schema}.{HISTORY_TABLE}"})[0]
        try:
            _apply_ddl(pg, settings.raw_schema, plan, target_exists, added, outcome)
            _run(settings, replica, pg, plan, outcome, target_exists)
        except Exception as exc:
            tracking.write_failure(pg, outcome, f"{type(exc).__name__}: {exc}", schema=settings.raw_schema)
            raise
        return outcome
    finally:
        replica.close()
        pg.close()


def prepare(settings: Settings, replica, pg, config: TableConfig, *, full: bool = False,
            strategy: str | None = None) -> tuple[Plan, bool, list]:
    """Reflect both sides, read both states and the bounds -> (plan, raw table exists, columns to add).

    Read-only: `etl render` uses it too. The DDL it implies is applied by _apply_ddl.
    """
    rep_db, schema_name = settings.replica_url.database, settings.raw_schema
    schema = reflect_mysql_table(replica, rep_db, config.name)
    if schema is None:
        raise SchemaError(f"table {config.name!r} does not exist in the replica database {rep_db}: run `etl copy` first")
    existing = reflect_pg_columns(pg, schema_name, config.name)
    added, notes = [], []
    if existing:
        added, notes = drift(schema, existing, lambda col, t: _same_pg_type(col.pg_type, t))
    state = tracking.read_state(pg, "load", config.name, schema=schema_name)
    copy_state = tracking.read_state(replica, "copy", config.name)
    horizon = _horizon(replica, rep_db, config, schema, copy_state)
    plan = make_plan("load", config, schema, state, horizon, force_full=full, strategy_override=strategy,
                     target_exists=bool(existing))
    if notes:
        plan = replace(plan, warnings=plan.warnings + tuple(notes))
    return plan, bool(existing), added


def _apply_ddl(pg, schema_name: str, plan: Plan, exists: bool, added: list, outcome: tracking.Outcome) -> None:
    """Inside the load's transaction: PostgreSQL DDL commits (or not) together with the data."""
    schema = Ident(schema_name)
    with pg.cursor() as cur:
        if not exists:
            execute(cur, render("postgres/create_raw_table", schema=schema, table=plan.table,
                                columns=plan.columns, key=plan.key))
            execute(cur, render("postgres/create_load_marker_index", schema=schema, table=plan.table,
                                name=Ident(f"ix_{plan.table}__etl_load_id"[:63])))
        for column in added:
            execute(cur, render("postgres/add_column", schema=schema, table=plan.table, column=column))
            outcome.notes.append(f"column {column.name!r} added to {schema_name}.{plan.table}")
            log.warning("%s: column %s added to %s.%s", plan.table, column.name, schema_name, plan.table)


def _same_pg_type(expected: str, actual: str) -> bool:
    aliases = {"timestamp": "timestamp without time zone", "varchar": "character varying"}
    normal = expected
    for short, long in aliases.items():
        if normal.startswith(short):
            normal = long + normal[len(short):]
    return normal == actual


def _horizon(replica, database: str, config: TableConfig, schema: TableSchema, copy_state) -> Horizon:
    """The copy phase's committed watermarks bound the read (inclusive); without them, the replica's clock."""
    base = capture_horizon(replica, watermark_candidates(config, schema), database, config.name, render)
    inclusive = {}
    if copy_state.status is not None:
        for column in watermark_candidates(config, schema):
            if column.name == copy_state.primary_column_name:
                text = copy_state.last_primary_value
            else:
                text = copy_state.column_values.get(column.name)
            value = watermark.parse(text, column.watermark_kind)
            if value is not None:
                inclusive[column.name] = value
    return Horizon(timestamp_upper=base.timestamp_upper, datetime_upper=base.datetime_upper,
                   date_upper=base.date_upper, integer_max=base.integer_max, inclusive=inclusive)


def _resume_point(settings: Settings, replica, pg, plan: Plan, outcome: tracking.Outcome) -> tuple | None:
    """raw is the load's target: it holds exactly what was loaded."""
    schema, key = Ident(settings.raw_schema), tuple(plan.order[1:])
    return resume_point(replica, settings.replica_url.database, plan, outcome, lambda value: fetch_one(
        pg, render("postgres/watermark_last_key", schema=schema, table=plan.table,
                   column=plan.primary.column, key=key), {"value": value}))


def _estimate(replica, database: str, plan: Plan) -> int | None:
    """Rows a full read will see, from the server's statistics (progress, SMALL_TABLE); None when incremental."""
    if plan.strategy != "full":
        return None
    row = fetch_one(replica, render("mysql/reflect_table"), {"schema": database, "table": plan.table})
    return int(row[2]) if row and row[2] is not None else None


def _run(settings: Settings, replica, pg, plan: Plan, outcome: tracking.Outcome, target_exists: bool) -> None:
    schema_name = Ident(settings.raw_schema)
    log.info("%s", plan.describe())
    columns = tuple(c.name for c in plan.columns)

    def render_block(after_key: bool, upto_key: bool):
        return render("mysql/load_select", plan=plan, after_key=after_key, upto_key=upto_key)

    def render_boundary(after_key: bool):
        return render("mysql/read_boundary", plan=plan, database=None, after_key=after_key)

    params = dict(plan.window_params(), load_id=outcome.history_id)
    estimate = _estimate(replica, settings.replica_url.database, plan)
    start_after = _resume_point(settings, replica, pg, plan, outcome) if target_exists else None
    # From here until blocks is closed, the prefetch thread alone uses the replica connection.
    blocks = prefetch(read_blocks(replica, plan, render_block, render_boundary, params, max_rows=plan.batch_size,
                                  start_after=start_after))
    first = next(blocks, None)  # nothing to load: no stage, no COPY, no upsert

    def lines():
        with progress.track(f"load {plan.table}", estimate=estimate) as bar:
            for block in itertools.chain([first], blocks):
                for bound, value in zip(plan.bounds, block.maxima):
                    outcome.observe(bound.column, value)
                outcome.rows_read += block.rows
                outcome.values_adjusted += block.adjusted
                bar.advance(block.rows)
                yield block.data
                yield b"\n"  # the last line's end (not joined to the block: no copy of megabytes)
                crash_point("load.during_copy")

    try:
        with pg.cursor() as cur:
            # Tracking commits with the data, so a commit lost in a server crash loses both: the next run
            # reads the same rows again. Nothing is gained by waiting for the WAL flush.
            execute(cur, render("postgres/session_fast_commit"))
            populated = target_exists and fetch_one(pg, render("postgres/table_is_empty", schema=schema_name,
                                                                 table=plan.table))[0] is False
            small_lookup = plan.config.is_full_table and (estimate or 0) <= SMALL_TABLE
            if plan.strategy == "full" and populated and small_lookup:
                stage = Ident("_etl_stage")
                execute(cur, render("postgres/create_stage", stage=stage, schema=schema_name, table=plan.table))
                if first is not None:
                    copy = render("postgres/copy_from_stdin", schema=None, table=stage, columns=columns)
                    cur.copy_expert(copy.plain(), ChunkReader(lines()), size=COPY_CHUNK)
                context = dict(schema=schema_name, table=plan.table, stage=stage, columns=columns)
                if fetch_one(pg, render("postgres/load_stage_differs", **context))[0]:
                    execute(cur, render("postgres/truncate", schema=schema_name, table=plan.table))
                    execute(cur, render("postgres/load_replace_from_stage", **context))
                    outcome.rows_written = outcome.rows_read
                else:
                    outcome.notes.append("full_table refresh: no row changed, raw left as it was")
            elif plan.strategy == "full":
                if populated:
                    execute(cur, render("postgres/truncate", schema=schema_name, table=plan.table))
                if first is not None:
                    copy = render("postgres/copy_from_stdin", schema=schema_name, table=plan.table,
                                  columns=columns)
                    cur.copy_expert(copy.plain(), ChunkReader(lines()), size=COPY_CHUNK)
                outcome.rows_written = outcome.rows_read
            elif first is not None:
                stage = Ident("_etl_stage")
                execute(cur, render("postgres/create_stage", stage=stage, schema=schema_name, table=plan.table))
                copy = render("postgres/copy_from_stdin", schema=None, table=stage, columns=columns)
                cur.copy_expert(copy.plain(), ChunkReader(lines()), size=COPY_CHUNK)
                update_columns = tuple(c for c in columns if c not in plan.key)
                execute(cur, render("postgres/load_upsert", schema=schema_name, table=plan.table, stage=stage,
                                    columns=columns, key=plan.key, update_columns=update_columns))
                outcome.rows_written = max(cur.rowcount, 0)
    finally:
        blocks.close()
    if outcome.values_adjusted:
        outcome.notes.append(f"{outcome.values_adjusted} values adjusted (zero dates to NULL, NUL bytes removed)")
    if plan.config.delete_detection == "deletedobject":
        rep_db = settings.replica_url.database
        if reflect_mysql_table(replica, rep_db, "deletedobject") is None:
            outcome.notes.append("deletedobject is not in the replica: configure it in tables.yml; no deletes applied")
        else:
            deleted = apply_deleted_objects(replica, rep_db, rep_db, pg, "postgres", {"schema": schema_name},
                                            plan.config, plan.key[0], "load", schema=settings.raw_schema)
            outcome.notes.append(f"{deleted} rows deleted (deletedobject feed)")
    crash_point("load.before_tracking")
    tracking.write_success(pg, outcome, schema=settings.raw_schema)
    crash_point("load.before_commit")
    pg.commit()
    replica.rollback()
