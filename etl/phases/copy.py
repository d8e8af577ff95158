"""Copy phase: source MySQL -> replica MySQL (same schema, InnoDB), tracked in etl_copy_status.

Same server: rows move with one INSERT ... SELECT and never pass through Python. Separate servers: the
source renders blocks of rows as LOAD DATA text (mysql/copy_select.sql.j2, one value per block, read while
the previous block is written) and the replica takes each block with LOAD DATA LOCAL INFILE, into a stage
that is upserted (or straight into the empty target of a full refresh); with the primary strategy each
block commits together with a checkpoint of the watermark (blocks follow the watermark order), so a crash
loses at most one block of work.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from dataclasses import replace

from etl import progress, tracking
from etl.config import TableConfig
from etl.db import execute, fetch_one, mysql_connect
from etl.errors import SchemaError
from etl.faults import crash_point, drop_point
from etl.phases.deletes import apply_deleted_objects
from etl.execute import RAW_TEXT_CONV, capture_horizon, keyset_batches, parse_lead, prefetch, read_blocks
from etl.phases.common import drift, resume_point, watermark_candidates
from etl.plan import Plan, make_plan
from etl.render import Ident, render
from etl.schema import TableSchema, reflect_mysql_table
from etl.settings import Settings

log = logging.getLogger("etl.copy")


def copy_table(settings: Settings, config: TableConfig, run_id: str, *, full: bool = False,
               strategy: str | None = None) -> tracking.Outcome:
    source = mysql_connect(settings.source_url, role="source", conv=RAW_TEXT_CONV)
    replica = mysql_connect(settings.replica_url, role="replica", conv=RAW_TEXT_CONV,
                            local_infile=not settings.same_mysql_server())
    try:
        with replica.cursor() as cur:
            execute(cur, render("mysql/read_committed"))
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
    start_after = _resume_point(settings, replica, plan, outcome) if not empty else None
    if settings.same_mysql_server():
        statement = render("mysql/copy_insert_select", plan=plan, columns=tuple(c.name for c in columns),
                           update_columns=update_columns, target=target,
                           replica_db=Ident(settings.replica_url.database),
                           source_db=Ident(settings.source_url.database), after_key=start_after is not None)
        keyset = {f"k{i}": v for i, v in enumerate(start_after or ())}
        with replica.cursor() as cur, progress.track(f"copy {plan.table} (server-side)", counts_rows=False):
            execute(cur, statement, dict(plan.window_params(), **keyset))
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
        _stream(source, replica, plan, outcome, target, update_columns, checkpoint=not shadow,
                start_after=start_after)

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


def _resume_point(settings: Settings, replica, plan: Plan, outcome: tracking.Outcome) -> tuple | None:
    """The replica is the copy's target: it holds exactly what was copied."""
    database = Ident(settings.replica_url.database)
    key = tuple(plan.order[1:])
    return resume_point(replica, settings.replica_url.database, plan, outcome, lambda value: fetch_one(
        replica, render("mysql/watermark_last_key", database=database, table=plan.table,
                        column=plan.primary.column, key=key), {"value": value}))


def _stream(source, replica, plan: Plan, outcome: tracking.Outcome, target: Ident, update_columns, *,
            checkpoint: bool, start_after: tuple | None = None) -> None:
    """Separate servers: blocks of LOAD DATA text rendered by the source, loaded by the replica.

    A full refresh loads straight into its (empty or shadow) target; otherwise each block goes to a
    temporary stage and is upserted from there, so unchanged rows are not rewritten. Without LOAD DATA
    LOCAL on the replica (MySQL 8 turns it off by default) rows go through Python instead (slower).
    """
    if not _infile_enabled(replica):
        outcome.notes.append("replica refuses LOAD DATA LOCAL INFILE (local_infile=OFF): rows copied one by one")
        log.warning("%s: the replica has local_infile=OFF; copying row by row (slow)", plan.table)
        _stream_rows(source, replica, plan, outcome, target, update_columns, checkpoint=checkpoint,
                     start_after=start_after)
        return
    columns = tuple(c.name for c in plan.columns)
    database = Ident(_database_of(source))
    direct = plan.strategy == "full"  # the target is empty (a new table, or the shadow of a full refresh)
    stage = Ident("_etl_copy_stage")
    into = target if direct else stage
    load = render("mysql/copy_load_infile", table=into, columns=columns)

    def render_block(after_key: bool, upto_key: bool):
        return render("mysql/copy_select", plan=plan, database=database, after_key=after_key, upto_key=upto_key)

    def render_boundary(after_key: bool):
        return render("mysql/read_boundary", plan=plan, database=database, after_key=after_key)

    estimate = int(fetch_one(source, render("mysql/reflect_table"),
                             {"schema": database, "table": plan.table})[2] or 0) if direct else None
    source.commit()
    folder = tempfile.mkdtemp(prefix="etl-copy-")
    path = os.path.join(folder, "block.txt")
    with replica.cursor() as cur:
        if not direct:
            execute(cur, render("mysql/copy_stage_drop", stage=stage))
            execute(cur, render("mysql/copy_stage_create", stage=stage, table=target))
        upsert = render("mysql/copy_stage_upsert", table=target, stage=stage, columns=columns,
                        update_columns=update_columns)

        def between() -> None:  # in the prefetch thread, which alone uses `source` while blocks are read
            source.commit()  # no read transaction spans two blocks
            drop_point("copy.batch_committed", source)

        blocks = prefetch(read_blocks(source, plan, render_block, render_boundary, plan.window_params(),
                                      max_rows=plan.batch_size, between=between, start_after=start_after))
        try:
            with progress.track(f"copy {plan.table}", estimate=estimate) as bar:
                for block in blocks:
                    with open(path, "wb") as handle:
                        handle.write(block.data)
                        handle.write(b"\n")
                    if not direct:
                        execute(cur, render("mysql/copy_stage_clear", stage=stage))
                    execute(cur, load, {"path": path})
                    if not direct:
                        execute(cur, upsert)
                    outcome.rows_written += max(cur.rowcount, 0)
                    for bound, value in zip(plan.bounds, block.maxima):
                        outcome.observe(bound.column, value)
                    outcome.rows_read += block.rows
                    bar.advance(block.rows)
                    if checkpoint and plan.strategy == "primary":
                        tracking.write_success(replica, outcome, status="running", final=False)
                    replica.commit()
                    crash_point("copy.batch_committed")  # the dropped-connection half: between() above
        finally:
            blocks.close()
            shutil.rmtree(folder, ignore_errors=True)
        if not direct:
            execute(cur, render("mysql/copy_stage_drop", stage=stage))


def _infile_enabled(replica) -> bool:
    return bool(int(fetch_one(replica, render("mysql/local_infile_enabled"))[0] or 0))


def _stream_rows(source, replica, plan: Plan, outcome: tracking.Outcome, target: Ident, update_columns, *,
                 checkpoint: bool, start_after: tuple | None = None) -> None:
    """The row-by-row path: keyset batches read by PyMySQL, written with executemany."""
    schema_columns = plan.columns
    kinds = plan.lead_kinds
    lead_len = len(plan.lead)
    lead_index = {name: i for i, name in enumerate(plan.lead)}
    upsert = render("mysql/copy_upsert", table=target, columns=tuple(c.name for c in schema_columns),
                    update_columns=update_columns)
    names = [f"v{i}" for i in range(len(schema_columns))]
    database = Ident(_database_of(source))

    def render_batch(after_key: bool):
        return render("mysql/copy_select_rows", plan=plan, database=database, after_key=after_key)

    for rows in keyset_batches(source, render_batch, plan, kinds, plan.window_params(), start_after):
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
