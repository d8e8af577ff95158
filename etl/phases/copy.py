"""Copy phase: source MySQL -> replica MySQL (same schema, InnoDB), tracked in etl_copy_status.

:func:`prepare` gathers the facts (read-only: both tables' definitions, the stored state, the horizon,
the replica table's state, a crowded second's resume key, LOAD DATA LOCAL on the replica), :func:`decide`
turns them into a :class:`Situation` (pure), and :func:`recipe` into the steps the executor runs (pure):

* same server: rows move with INSERT ... SELECT and never pass through Python, one chunk of the primary
  key per statement, each sized to take about ETL_CHUNK_SECONDS (a MyISAM source table is locked against
  every writer while a statement reads it);
* separate servers: the source renders blocks of rows as LOAD DATA text (mysql/copy_select, one value per
  block, read while the previous block is written) and the replica takes each block with LOAD DATA LOCAL
  INFILE, into a stage that is upserted (or straight into the empty target of a full refresh); without
  LOAD DATA LOCAL (MySQL 8 turns it off by default) rows go through Python, batch by batch; blocks and
  batches follow ETL_CHUNK_SECONDS too;
* a full refresh of a table with rows fills a shadow table, swapped in with one RENAME TABLE;
* with the primary strategy each block commits together with a checkpoint of the watermark (blocks follow
  the watermark order), so a crash loses at most one block of work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from etl import executor, tracking
from etl.config import TableConfig
from etl.db import execute, fetch_one
from etl.blocks import TARGET_SECONDS
from etl.dialects import mysql
from etl.errors import SchemaError
from etl.phases import deletes, facts
from etl.plan import Bound, Plan, make_plan
from etl.recipe import (BATCH_LABELS, BLOCK_FILE, BLOCK_LABELS, BOUNDARY_LABELS, CHUNK_LABELS, LONG_PART_LABELS,
                        LONG_ROW_LABELS, BatchRead, BlockRead, Checkpoint, Chunked, Commit, Example, Exec, ExecRows,
                        APPEND_LABELS, KEY_ROW_LABELS, LongRows, LongValue, Note, Observe, PerBlock, Recipe, Retry,
                        RowParts, Step, Track,
                        Transfer, Variants)
from etl.render import Ident
from etl.schema import BINARY_TYPES, Column
from etl.settings import Settings

log = logging.getLogger("etl.copy")


STAGE = Ident("_etl_copy_stage")
#: Where each block's commit is: the crash-safety tests stop the process here.
BATCH_COMMITTED = "copy.batch_committed"


@dataclass(frozen=True)
class Facts:
    """What the copy phase found before planning (prepare)."""

    same_server: bool                 # source and replica on one server: INSERT ... SELECT
    target: str                       # facts.NEW | EMPTY | POPULATED
    added: tuple[Column, ...] = ()    # source columns the replica table lacks (schema drift)
    resume_after: tuple | None = None  # a crowded watermark second's resume key (plan.watermark_resume)
    local_infile: bool = True         # the replica accepts LOAD DATA LOCAL INFILE (separate servers)
    estimate: int | None = None       # the source's row estimate (progress of a full separate-servers copy)
    widened: tuple[Column, ...] = ()  # source columns retyped wider: the replica column is altered in place
    narrowed: tuple[Column, ...] = () # retyped narrower or otherwise: only a full refresh (prepare refuses others)


@dataclass(frozen=True)
class Situation:
    """How this run copies, decided from the plan and the facts (decide)."""

    target: str                       # new | empty | populated
    into: str                         # table | shadow (a full refresh of a table with rows)
    rows: str                         # server-side | blocks | row by row
    stage: bool                       # blocks go through a stage and are upserted (not a full refresh)
    checkpoint: bool                  # every block commits with its watermark (primary strategy)
    resume_after: tuple | None
    added: tuple[Column, ...]
    deletes: bool                     # the deletedobject feed runs
    estimate: int | None
    changed: tuple[Column, ...] = ()  # replica columns retyped (MODIFY) before any row moves

    def describe(self) -> str:
        parts = [f"target {self.target}", f"into the {self.into}", f"rows {self.rows}"]
        if self.stage:
            parts.append("through a stage")
        if self.checkpoint:
            parts.append("a checkpoint per block")
        if self.resume_after is not None:
            parts.append("resume past a crowded second")
        if self.added:
            parts.append(f"{len(self.added)} column(s) to add")
        if self.changed:
            parts.append(f"{len(self.changed)} column(s) to retype")
        if self.into == "shadow":
            parts.append("rebuilt from the source definition")
        if self.deletes:
            parts.append("deletedobject feed")
        return "; ".join(parts)


def decide(plan: Plan, found: Facts) -> Situation:
    """Pure: the situation of one copy run."""
    empty = found.target in (facts.NEW, facts.EMPTY)
    full = plan.strategy == "full"
    if found.same_server:
        rows = "server-side"
    else:
        rows = "blocks" if found.local_infile else "row by row"
    into = "shadow" if full and not empty else "table"
    # A shadow is created from the source definition: the live table's columns are left alone. Into the
    # table itself a narrowing MODIFY happens only in a full refresh of an empty table (no value to cut).
    altered = into == "table" and found.target != facts.NEW
    changed = found.widened + (found.narrowed if full else ()) if altered else ()
    return Situation(
        target=found.target,
        into=into,
        rows=rows,
        stage=rows == "blocks" and not full,
        checkpoint=rows != "server-side" and plan.strategy == "primary",
        resume_after=found.resume_after if found.target == facts.POPULATED else None,
        added=found.added if altered else (),
        deletes=plan.config.delete_detection == "deletedobject",
        estimate=found.estimate if rows == "blocks" and full else None,
        changed=changed,
    )


#: Situations the golden files show for every table; together they reach every branch of decide().
EXAMPLES = (
    Example("same-server-full-new", "full", Facts(True, facts.NEW)),
    Example("same-server-full-shadow", "full", Facts(True, facts.POPULATED)),
    Example("same-server-incremental", "incremental", Facts(True, facts.POPULATED)),
    Example("same-server-resume-deletes", "incremental", Facts(True, facts.POPULATED), resume=True, deletes=True),
    Example("schema-drift", "incremental", Facts(True, facts.POPULATED), drift=True),
    Example("schema-drift-full-empty", "full", Facts(True, facts.EMPTY), drift=True),
    Example("separate-servers-full-new", "full", Facts(False, facts.NEW, estimate=1000)),
    Example("separate-servers-full-shadow", "full", Facts(False, facts.POPULATED, estimate=1000)),
    Example("separate-servers-incremental", "incremental", Facts(False, facts.POPULATED)),
    Example("separate-servers-resume-deletes", "incremental", Facts(False, facts.POPULATED), resume=True,
            deletes=True),
    Example("row-by-row-incremental", "incremental", Facts(False, facts.POPULATED, local_infile=False)),
    Example("row-by-row-full-shadow", "full", Facts(False, facts.POPULATED, local_infile=False)),
)


@dataclass(frozen=True)
class Place:
    """Where the copy reads and writes: the two databases' names; and how long one statement reading the
    source aims to take (ETL_CHUNK_SECONDS)."""

    source_db: str
    replica_db: str
    chunk_seconds: float = TARGET_SECONDS


def recipe(plan: Plan, situation: Situation, place: Place, store: tracking.Store) -> Recipe:
    """Pure: the steps of one copy run, in order."""
    table = plan.table
    source_db, replica_db = Ident(place.source_db), Ident(place.replica_db)
    target = Ident(f"{table}__etl_new"[:64]) if situation.into == "shadow" else table
    columns = tuple(c.name for c in plan.columns)
    update_columns = tuple(c for c in columns if c not in plan.key)
    steps: list[Step] = []

    def create(branch: str, name: Ident) -> list[Step]:
        """InnoDB copy of the source definition, an index per watermark column."""
        made: list[Step] = [Exec(branch, "replica", mysql.render("create_replica_table", table=name,
                                                                 columns=plan.columns, key=plan.key))]
        for bound in plan.bounds:
            if bound.column != plan.key[0]:
                made.append(Exec(branch, "replica", mysql.render(
                    "create_replica_index", name=Ident(f"ix_etl_{bound.column}"[:64]), table=name,
                    columns=(bound.column,) + tuple(k for k in plan.key if k != bound.column))))
        return made

    if situation.target == facts.NEW:
        steps += create("new table", table)
    for column in situation.added:
        steps += [Exec("schema drift", "replica", mysql.render("add_column", table=table, column=column)),
                  Note("schema drift", f"column {column.name!r} added to the replica", log="warning")]
    for column in situation.changed:
        steps += [Exec("schema drift", "replica", mysql.render("modify_column", table=table, column=column)),
                  Note("schema drift", f"column {column.name!r} retyped to {column.column_type} in the replica",
                       log="warning")]
    steps.append(_retry(plan, store, source_db, columns, update_columns))
    if situation.into == "shadow":
        # From the source definition, not LIKE the live table: a full refresh also repairs its column types.
        steps += [Exec("shadow swap", "replica", mysql.render("drop_table", table=target)),
                  *create("shadow swap", target)]
    if situation.resume_after is not None:
        steps.append(Note("resume", facts.resume_note(situation.resume_after), log="info"))

    if situation.rows == "server-side":
        # Chunks walk the primary key whatever the strategy: the source indexes no watermark column of most
        # OpenDental tables, so a read in watermark order would scan the table for every chunk.
        keyed = replace(plan, strategy="full")
        resume = {f"r{i}": v for i, v in enumerate(situation.resume_after or ())}

        def insert(**flags: bool):
            return mysql.render("copy_insert_select", plan=plan, chunk_order=plan.key, columns=columns,
                                update_columns=update_columns, target=target, replica_db=replica_db,
                                source_db=source_db, resume=bool(resume), **flags)

        steps.append(Chunked(
            "server-side", "replica",
            boundary=Variants(lambda **f: mysql.render("read_boundary", plan=keyed, database=source_db, **f),
                              ("after_key",), BOUNDARY_LABELS),
            statement=Variants(insert, ("after_key", "upto_key"), CHUNK_LABELS),
            params=dict(plan.window_params(), **resume), kinds=keyed.lead_kinds[:len(plan.key)],
            seconds=place.chunk_seconds, counts=("rows_written", "rows_read"), progress=f"copy {table} (server-side)"))
        for bound in plan.bounds:
            window = bound if plan.strategy != "full" else Bound(bound.column, bound.kind, None, bound.upper,
                                                                 bound.upper_inclusive)
            params = {k: v for k, v in (("w0_lo", window.lower), ("w0_hi", window.upper)) if v is not None}
            steps.append(Observe("server-side", "replica", mysql.render(
                "copy_window_max", bound=window, table=target, database=replica_db), params, bound.column, bound.kind))
        steps.append(Note("server-side", "server-side INSERT ... SELECT (rows_read counts rows written)"))
    elif situation.rows == "blocks":
        steps.append(_blocks(plan, situation, store, source_db, target, columns, update_columns, place.chunk_seconds))
    else:
        steps.append(Note("row by row", "replica refuses LOAD DATA LOCAL INFILE (local_infile=OFF): rows copied "
                                        "one by one", log="warning"))
        steps.append(_rows(plan, situation, store, source_db, target, columns, update_columns, place.chunk_seconds))

    if situation.into == "shadow":
        old = Ident(f"{table}__etl_old"[:64])
        steps += [Exec("shadow swap", "replica", mysql.render("drop_table", table=old)),
                  Exec("shadow swap", "replica", mysql.render("swap_tables", table=table, old=old, shadow=target)),
                  Exec("shadow swap", "replica", mysql.render("drop_table", table=old))]
    if situation.deletes:
        steps.append(deletes.feed_step(plan.config, plan.key[0], phase="copy", read_on="source",
                                       log_database=place.source_db, write_on="replica", write=mysql,
                                       write_scope=store.scope, store=store))
    steps += [Track("always", "replica", store.writer(plan, final=True), fault="copy.before_tracking"),
              Commit("always", "replica")]
    return Recipe("copy", plan, situation, tuple(steps))


def _blocks(plan: Plan, situation: Situation, store: tracking.Store, source_db: Ident, target: Ident,
            columns: tuple, update_columns: tuple, seconds: float) -> Transfer:
    """Blocks of LOAD DATA text rendered by the source, loaded by the replica: straight into the (new,
    empty or shadow) target of a full refresh, otherwise into a stage that is upserted from, so unchanged
    rows are not rewritten."""
    branch = "blocks"
    into = STAGE if situation.stage else target
    per_block: list[Step] = []
    if situation.stage:
        per_block.append(Exec("stage", "replica", mysql.render("copy_stage_clear", stage=STAGE)))
    per_block.append(Exec(branch, "replica", mysql.render("copy_load_infile", table=into, columns=columns),
                          {"path": BLOCK_FILE}, counts=() if situation.stage else ("rows_written",),
                          warnings=mysql.render("statement_warnings")))
    if situation.stage:
        per_block.append(Exec("stage", "replica", mysql.render(
            "copy_stage_upsert", table=target, stage=STAGE, columns=columns, update_columns=update_columns),
            counts=("rows_written",)))
    per_block += _block_end(plan, situation, store)
    setup = finish = ()
    if situation.stage:
        setup = (Exec("stage", "replica", mysql.render("copy_stage_drop", stage=STAGE)),
                 Exec("stage", "replica", mysql.render("copy_stage_create", stage=STAGE, table=target)))
        finish = (Exec("stage", "replica", mysql.render("copy_stage_drop", stage=STAGE)),)

    def render(statement: str, **flags: bool):
        return mysql.render(statement, plan=plan, database=source_db, **flags)

    read = BlockRead(
        on="source", session=(mysql.render("session_blocks"), mysql.render("session_blocks_limit")),
        boundary=Variants(lambda **f: render("read_boundary", **f), ("after_key",), BOUNDARY_LABELS),
        block=Variants(lambda **f: render("copy_select", **f), ("after_key", "upto_key"), BLOCK_LABELS),
        params=dict(plan.window_params(), **plan.admission_params()), start_after=situation.resume_after,
        fresh_reads=BATCH_COMMITTED, seconds=seconds, long_rows=_long_rows(plan, source_db))
    return Transfer(branch, read, PerBlock(tuple(per_block), files=mysql.block_files), label=f"copy {plan.table}",
                    estimate=situation.estimate, setup=setup, finish=finish)


def _long_rows(plan: Plan, source_db: Ident) -> LongRows | None:
    """A long row read alone (etl/blocks.py fill_long_rows): its line, then each raw value in parts."""
    raws = [(i, c) for i, c in enumerate(plan.columns) if c.infile_kind == "raw"]
    if not raws:
        return None
    return LongRows(
        row=Variants(lambda: mysql.render("copy_row_alone", plan=plan, database=source_db), (), LONG_ROW_LABELS),
        values=tuple(LongValue(i, "infile binary" if c.data_type in BINARY_TYPES else "infile text",
                               Variants(partial(mysql.render, "copy_value_part", plan=plan, column=c,
                                                database=source_db), (), LONG_PART_LABELS))
                     for i, c in raws))


def _rows(plan: Plan, situation: Situation, store: tracking.Store, source_db: Ident, target: Ident,
          columns: tuple, update_columns: tuple, seconds: float) -> Transfer:
    """The row-by-row path: keyset batches read by PyMySQL, written with executemany. A long row (medium and long
    text and blob values over a bound length) comes in its batch with those values empty and each is read in parts
    (etl/blocks.py read_long_values); a row longer than the replica's max_allowed_packet is written with its
    long values empty, then each appended in parts (etl/executor.py write_in_parts): no statement on either
    side is longer than a part, whatever the value's length."""
    long_values, write = _row_values(plan, store, source_db, target, columns, update_columns, "row by row")
    read = BatchRead(on="source", batch=Variants(
        lambda **f: mysql.render("copy_select_rows", plan=plan, database=source_db, **f), ("after_key",), BATCH_LABELS),
        params=plan.window_params(), start_after=situation.resume_after, seconds=seconds, long_values=long_values,
        packet=mysql.render("max_allowed_packet") if long_values else None)
    per_batch = (write, *_block_end(plan, situation, store))
    return Transfer("row by row", read, PerBlock(per_batch), label=f"copy {plan.table}")


def _row_values(plan: Plan, store: tracking.Store, source_db: Ident, target: Ident, columns: tuple,
                update_columns: tuple, branch: str) -> tuple[tuple[LongValue, ...], ExecRows]:
    """How the row-by-row copy reads a row's long values (in parts) and writes its rows: an upsert per row, a
    row longer than the replica's max_allowed_packet in parts, a single value longer than it rejected."""
    raws = [(i, c) for i, c in enumerate(plan.columns) if c.in_parts]
    long_values = tuple(
        LongValue(i, "raw binary" if c.data_type in BINARY_TYPES else "raw text",
                  Variants(partial(mysql.render, "copy_value_part", plan=plan, column=c, database=source_db), (),
                           LONG_PART_LABELS))
        for i, c in raws)
    parts = RowParts(
        key=tuple(columns.index(k) for k in plan.key),
        values=tuple((i, Variants(partial(mysql.render, "copy_value_append", table=target, column=c.name,
                                          key=plan.key), (), APPEND_LABELS)) for i, c in raws)) if raws else None
    upsert = mysql.render("copy_upsert", table=target, columns=columns, update_columns=update_columns)
    return long_values, ExecRows(branch, "replica", upsert, tuple(f"v{i}" for i in range(len(columns))),
                                 counts=("rows_written",), packet=mysql.render("max_allowed_packet"), parts=parts,
                                 rejects=store.rejects(plan.table))


def _retry(plan: Plan, store: tracking.Store, source_db: Ident, columns: tuple, update_columns: tuple) -> Retry:
    """Every copy run first retries the table's rejected rows, read by key alone and written into the live
    table like the row-by-row copy's rows (whichever path the run then takes)."""
    long_values, write = _row_values(plan, store, source_db, plan.table, columns, update_columns, "rejects")
    return Retry("rejects", read_on="source", write=write, long_values=long_values,
                 row=Variants(lambda: mysql.render("copy_select_key", plan=plan, database=source_db), (),
                              KEY_ROW_LABELS),
                 packet=mysql.render("max_allowed_packet"), rejects=store.rejects(plan.table))


def _block_end(plan: Plan, situation: Situation, store: tracking.Store) -> list[Step]:
    """Each block commits, with a checkpoint of its watermark when blocks follow the watermark order."""
    end: list[Step] = []
    if situation.checkpoint:
        end.append(Checkpoint("checkpoint", "replica", store.writer(plan, final=False)))
    end.append(Commit("always", "replica", fault_after=BATCH_COMMITTED))
    return end


# ---------------------------------------------------------------- running it

def prepare(settings: Settings, source: Any, replica: Any, config: TableConfig, *, full: bool = False,
            strategy: str | None = None) -> Recipe:
    """Gather the facts (read-only), decide the situation, make the recipe. `etl render` uses it too."""
    src_db, rep_db = settings.source_url.database, settings.replica_url.database
    schema = mysql.reflect_table(source, src_db, config.name)
    if schema is None:
        raise SchemaError(f"table {config.name!r} does not exist in the source database {src_db}")
    schema = mysql.map_table(schema)
    existing = mysql.reflect_table(replica, rep_db, config.name)
    drift = facts.Drift()
    if existing is not None:
        drift = facts.drift(schema, {c.name: c.column_type for c in existing.columns},
                            lambda col, _: mysql.type_change(existing.column(col.name), col))
    store = tracking.for_phase(settings, "copy")
    state = store.read_state(replica, "copy", config.name)
    horizon = facts.capture_horizon(source, facts.watermark_candidates(config, schema), src_db, config.name)
    source.commit()
    plan = make_plan("copy", config, schema, state, horizon, force_full=full, strategy_override=strategy,
                     target_exists=existing is not None, refresh=drift.refresh_reason("at the source"))
    if drift.narrowed and plan.strategy != "full":
        raise SchemaError(drift.refusal(config.name, "the source", "the replica"))
    if drift.notes:
        plan = replace(plan, warnings=plan.warnings + drift.notes)

    same_server = settings.same_mysql_server()
    target = facts.target_state(replica, mysql, store.scope, plan.table, existing is not None)
    resume_after = None
    if target == facts.POPULATED:  # the replica is the copy's target
        resume_after = facts.resume_point(replica, rep_db, plan, replica, mysql, {"database": Ident(rep_db)})
    local_infile, estimate = True, None
    if not same_server:
        local_infile = infile_enabled(replica)
        if plan.strategy == "full":
            estimate = mysql.row_estimate(source, src_db, plan.table)
            source.commit()
    found = Facts(same_server=same_server, target=target, added=drift.added, resume_after=resume_after,
                  local_infile=local_infile, estimate=estimate, widened=drift.widened, narrowed=drift.narrowed)
    return recipe(plan, decide(plan, found), Place(src_db, rep_db, settings.chunk_seconds), store)


def infile_enabled(replica: Any) -> bool:
    """Does the replica accept LOAD DATA LOCAL INFILE (MySQL 8 turns it off by default)?"""
    return bool(int(fetch_one(replica, mysql.render("local_infile_enabled"))[0] or 0))


def _connect(settings: Settings) -> tuple[Any, Any]:
    source = mysql.connect(settings.source_url, role="source", raw_text=True)
    try:
        replica = mysql.connect(settings.replica_url, role="replica", raw_text=True,
                                local_infile=not settings.same_mysql_server())
    except BaseException:
        source.close()
        raise
    return source, replica


def _drop_shadow(replica: Any, planned: Recipe) -> None:
    """A failed or interrupted full refresh leaves no half-filled shadow table behind (best effort: the
    connection may be the thing that failed; the next refresh drops it before filling it anyway)."""
    if planned.situation.into != "shadow":
        return
    try:
        replica.rollback()
        with replica.cursor() as cur:
            execute(cur, mysql.render("drop_table", table=Ident(f"{planned.plan.table}__etl_new"[:64])))
    except Exception:
        log.warning("%s: could not drop the shadow table %s__etl_new; the next full refresh does",
                    planned.plan.table, planned.plan.table, exc_info=True)


def preview(settings: Settings, config: TableConfig, *, strategy: str | None = None) -> Recipe:
    """`etl render copy TABLE`: the recipe a run would follow now; changes nothing."""
    source, replica = _connect(settings)
    try:
        return prepare(settings, source, replica, config, strategy=strategy)
    finally:
        source.close()
        replica.close()


def copy_table(settings: Settings, config: TableConfig, run_id: str, *, full: bool = False,
               strategy: str | None = None) -> tracking.Outcome:
    source, replica = _connect(settings)
    try:
        mysql.run(replica, "read_committed")
        started = tracking.utc_now()
        try:
            planned = prepare(settings, source, replica, config, full=full, strategy=strategy)
        except Exception as exc:  # before any data moves: recorded all the same
            tracking.for_phase(settings, "copy").record_unplanned(replica, "copy", config, run_id, started, exc)
            raise
        store = tracking.for_phase(settings, "copy")
        try:
            outcome = executor.run_phase(planned, {"source": source, "replica": replica}, run_id=run_id,
                                         store=store, tracked_on="replica")
        except BaseException:
            _drop_shadow(replica, planned)
            raise
        # The rows still rejected after the run (the table's other rows moved): the run exits 1 naming them.
        outcome.rejected = [tracking.describe_reject(config.name, row)
                            for row in store.rejects(config.name).rows(replica)]
        replica.commit()
        return outcome
    finally:
        source.close()
        replica.close()
