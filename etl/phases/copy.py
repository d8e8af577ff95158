"""Copy phase: source MySQL -> replica MySQL (same schema, InnoDB), tracked in etl_copy_status.

Same server: rows move with one INSERT ... SELECT and never pass through Python. Separate servers: keyset
batches are read as raw text and upserted; with the primary strategy each batch commits together with a
checkpoint of the watermark (rows are read in watermark order), so a crash loses at most one batch of work.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

from etl import tracking
from etl.config import TableConfig
from etl.db import execute, fetch_one, mysql_connect
from etl.errors import SchemaError
from etl.faults import crash_point
from etl.phases.deletes import apply_deleted_objects
from etl.execute import RAW_TEXT_CONV, capture_horizon, keyset_batches, parse_lead
from etl.phases.common import drift, watermark_candidates
from etl.plan import Plan, make_plan
from etl.render import Ident, render
from etl.schema import TableSchema, mysql_indexes, reflect_mysql_table
from etl.settings import Settings

log = logging.getLogger("etl.copy")


def copy_table(settings: Settings, config: TableConfig, run_id: str, *, full: bool = False,
               strategy: str | None = None) -> tracking.Outcome:
    source = mysql_connect(settings.source_url, role="source", conv=RAW_TEXT_CONV)
    replica = mysql_connect(settings.replica_url, role="replica", conv=RAW_TEXT_CONV)
    try:
        plan, target, added = prepare(settings, source, replica, config, full=full, strategy=strategy)
        outcome = tracking.Outcome(plan=plan, run_id=run_id, started_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
        outcome.notes.extend(plan.warnings)
        try:
            _apply_ddl(replica, plan, target, added, outcome)
            _run(settings, source, replica, plan, outcome, target is not None)
        except Exception as exc:
            tracking.write_failure(replica, outcome, f"{type(exc).__name__}: {exc}")
            raise
        return outcome
    finally:
        source.close()
        replica.close()


def prepare(settings: Settings, source, replica, config: TableConfig, *, full: bool = False,
            strategy: str | None = None) -> tuple[Plan, TableSchema | None, list]:
    """Reflect both sides, read the state and capture the horizon -> (plan, replica table, columns to add).

    Read-only: `etl render` uses it too. The DDL it implies is applied by _apply_ddl.
    """
    src_db, rep_db = settings.source_url.database, settings.replica_url.database
    schema = reflect_mysql_table(source, src_db, config.name)
    if schema is None:
        raise SchemaError(f"table {config.name!r} does not exist in the source database {src_db}")
    target = reflect_mysql_table(replica, rep_db, config.name)
    added, notes = [], []
    if target is not None:
        added, notes = drift(schema, {c.name: c.column_type for c in target.columns},
                             lambda col, t: col.column_type == t)
    state = tracking.read_state(replica, "copy", config.name)
    horizon = capture_horizon(source, watermark_candidates(config, schema), src_db, config.name, render)
    source.commit()
    plan = make_plan("copy", config, schema, state, horizon, force_full=full, strategy_override=strategy,
                     target_exists=target is not None)
    if notes:
        plan = replace(plan, warnings=plan.warnings + tuple(notes))
    return plan, target, added


def _apply_ddl(replica, plan: Plan, target: TableSchema | None, added: list, outcome: tracking.Outcome) -> None:
    if target is None:
        _create_replica_table(replica, plan)
        return
    with replica.cursor() as cur:
        for column in added:
            execute(cur, render("mysql/add_column", table=plan.table, column=column))
            outcome.notes.append(f"column {column.name!r} added to the replica")
            log.warning("%s: column %s added to the replica", plan.table, column.name)


def _create_replica_table(replica, plan: Plan) -> None:
    """InnoDB copy of the source definition, with an index per watermark column for the load's reads."""
    with replica.cursor() as cur:
        execute(cur, render("mysql/create_replica_table", table=plan.table, columns=plan.columns, key=plan.key))
        for bound in plan.bounds:
            if bound.column == plan.key[0]:
                continue
            columns = (bound.column,) + tuple(k for k in plan.key if k != bound.column)
            execute(cur, render("mysql/create_replica_index", name=Ident(f"ix_etl_{bound.column}"[:64]),
                                table=plan.table, columns=columns))


def _run(settings: Settings, source, replica, plan: Plan, outcome: tracking.Outcome, target_exists: bool) -> None:
    table = plan.table
    empty = not target_exists or int(fetch_one(replica, render("mysql/table_is_empty", table=table))[0]) == 1
    shadow = plan.strategy == "full" and not empty
    target = Ident(f"{table}__etl_new"[:64]) if shadow else table
    if shadow:
        with replica.cursor() as cur:
            execute(cur, render("mysql/drop_table", table=target))
            execute(cur, render("mysql/create_shadow_table", shadow=target, table=table))
    log.info("%s", plan.describe())

    columns = plan.columns
    update_columns = tuple(c.name for c in columns if c.name not in plan.key)
    if settings.same_mysql_server():
        statement = render("mysql/copy_insert_select", plan=plan, columns=tuple(c.name for c in columns),
                           update_columns=update_columns, target=target,
                           replica_db=Ident(settings.replica_url.database),
                           source_db=Ident(settings.source_url.database))
        with replica.cursor() as cur:
            execute(cur, statement, plan.window_params())
            outcome.rows_written = max(cur.rowcount, 0)
        for i, bound in enumerate(plan.bounds):
            window = bound if plan.strategy != "full" else type(bound)(bound.column, bound.kind, None, bound.upper,
                                                                       bound.upper_inclusive)
            params = {k: v for k, v in (("w0_lo", window.lower), ("w0_hi", window.upper)) if v is not None}
            value = fetch_one(replica, render("mysql/copy_window_max", bound=window, table=target,
                                              database=Ident(settings.replica_url.database)), params)[0]
            outcome.observe(bound.column, parse_lead(value, bound.kind))
        outcome.rows_read = outcome.rows_written
        outcome.notes.append("server-side INSERT ... SELECT (rows_read counts rows written)")
    else:
        _stream(source, replica, plan, outcome, target, update_columns, checkpoint=not shadow)

    if shadow:
        old = Ident(f"{table}__etl_old"[:64])
        with replica.cursor() as cur:
            execute(cur, render("mysql/drop_table", table=old))
            execute(cur, render("mysql/swap_tables", table=table, old=old, shadow=target))
            execute(cur, render("mysql/drop_table", table=old))
    if plan.config.delete_detection == "deletedobject":
        src_db = settings.source_url.database
        deleted = apply_deleted_objects(source, src_db, src_db, replica, "mysql", {}, plan.config, plan.key[0], "copy")
        outcome.notes.append(f"{deleted} rows deleted (deletedobject feed)")
    crash_point("copy.before_tracking")
    tracking.write_success(replica, outcome)
    replica.commit()


def _stream(source, replica, plan: Plan, outcome: tracking.Outcome, target: Ident, update_columns, *,
            checkpoint: bool) -> None:
    schema_columns = plan.columns
    kinds = plan.lead_kinds
    lead_len = len(plan.lead)
    lead_index = {name: i for i, name in enumerate(plan.lead)}
    upsert = render("mysql/copy_upsert", table=target, columns=tuple(c.name for c in schema_columns),
                    update_columns=update_columns)
    names = [f"v{i}" for i in range(len(schema_columns))]
    database = Ident(_database_of(source))

    def render_batch(after_key: bool):
        return render("mysql/copy_select", plan=plan, database=database, after_key=after_key)

    for rows in keyset_batches(source, render_batch, plan, kinds, plan.window_params()):
        source.commit()  # end the read transaction between batches
        for bound in plan.bounds:
            i = lead_index[bound.column]
            for row in rows:
                outcome.observe(bound.column, row[i])
        sql, _ = upsert.to_dbapi(dict.fromkeys(names))
        with replica.cursor() as cur:
            cur.executemany(sql, [dict(zip(names, row[lead_len:])) for row in rows])
            outcome.rows_written += max(cur.rowcount, 0)
        outcome.rows_read += len(rows)
        if checkpoint and plan.strategy == "primary":
            tracking.write_success(replica, outcome, status="running", final=False)
        replica.commit()
        crash_point("copy.batch_committed", source)


def _database_of(conn) -> str:
    db = conn.db
    return db.decode() if isinstance(db, bytes) else db
