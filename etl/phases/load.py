"""Load phase: replica MySQL -> the analytics database (PostgreSQL `raw`), tracked in raw.etl_load_status.

MySQL renders every row as a ready line of COPY text (mysql/load_select, _macros/copy_text.sql.j2);
Python only moves bytes. The replica is read in one consistent snapshot together with the copy phase's
watermark, which bounds the read: the load never reads past what the copy committed. Everything the load
writes in PostgreSQL (DDL, data, tracking, run history) commits in one transaction: after a crash, all or
nothing.

:func:`prepare` gathers the facts (read-only), :func:`decide` makes the :class:`Situation` (pure),
:func:`recipe` the steps (pure): a full refresh truncates and copies (a small full_table lookup is staged
and compared first, and raw rewritten only when a row changed); an incremental load copies into a stage
and upserts only the rows that changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from types import ModuleType
from typing import Any

from etl import executor, tracking
from etl.config import TableConfig
from etl.dialects import for_url, mysql
from etl.errors import SchemaError
from etl.phases import deletes, facts
from etl.plan import Plan, make_plan
from etl.recipe import (BLOCK_LABELS, BOUNDARY_LABELS, LOAD_ID, LONG_PART_LABELS, LONG_ROW_LABELS, BlockRead, Commit,
                        CopyStream, Example, Exec, LongRows, LongValue, Note, Recipe, Step, Track, Transfer, Variants,
                        When)
from etl.render import Ident
from etl.schema import Column
from etl.settings import Settings

log = logging.getLogger("etl.load")


STAGE = Ident("_etl_stage")
#: A full_table table this small (replica's row estimate) is staged and compared before raw is rewritten,
#: so an unchanged lookup table is not reloaded (and nothing downstream sees a load) on every run.
SMALL_TABLE = 100_000


@dataclass(frozen=True)
class Facts:
    """What the load phase found before planning (prepare)."""

    target: str                       # facts.NEW | EMPTY | POPULATED (raw.<table>)
    added: tuple[Column, ...] = ()    # replica columns raw lacks (schema drift)
    resume_after: tuple | None = None  # a crowded watermark second's resume key (plan.watermark_resume)
    estimate: int | None = None       # the replica's row estimate (a full read: progress, small lookups)
    log_in_replica: bool = True       # the replica holds deletedobject (the feed's log)
    widened: tuple[Column, ...] = ()  # replica columns whose raw type is narrower: ALTER ... TYPE in place
    narrowed: tuple[Column, ...] = () # raw type wider or incompatible: retyped after the truncate of a full refresh


@dataclass(frozen=True)
class Situation:
    """How this run loads, decided from the plan and the facts (decide)."""

    target: str                       # new | empty | populated
    write: str                        # replace (truncate + COPY) | compare (stage, rewrite if changed) | upsert
    resume_after: tuple | None
    added: tuple[Column, ...]
    deletes: str | None               # feed | no log | None
    estimate: int | None
    widened: tuple[Column, ...] = ()  # raw columns retyped in place before any row moves
    retyped: tuple[Column, ...] = ()  # raw columns retyped once emptied (a full refresh that replaces)

    def describe(self) -> str:
        parts = [f"target {self.target}", {"replace": "replace the contents", "upsert": "stage and upsert",
                                           "compare": "stage, compare, replace when changed"}[self.write]]
        if self.resume_after is not None:
            parts.append("resume past a crowded second")
        if self.added:
            parts.append(f"{len(self.added)} column(s) to add")
        if self.widened:
            parts.append(f"{len(self.widened)} column(s) to widen")
        if self.retyped:
            parts.append(f"{len(self.retyped)} column(s) retyped once emptied")
        if self.deletes:
            parts.append(f"deletedobject {self.deletes}")
        return "; ".join(parts)


def decide(plan: Plan, found: Facts) -> Situation:
    """Pure: the situation of one load run."""
    write = "upsert"
    if plan.strategy == "full":
        small = plan.config.is_full_table and (found.estimate or 0) <= SMALL_TABLE
        write = "compare" if found.target == facts.POPULATED and small and not found.narrowed else "replace"
    deletes = None
    if plan.config.delete_detection == "deletedobject":
        deletes = "feed" if found.log_in_replica else "no log"
    exists = found.target != facts.NEW
    return Situation(
        target=found.target, write=write,
        resume_after=found.resume_after if exists else None,
        added=found.added if exists else (),
        deletes=deletes, estimate=found.estimate if plan.strategy == "full" else None,
        widened=found.widened if exists else (),
        retyped=found.narrowed if exists and write == "replace" else (),
    )


#: Situations the golden files show for every table; together they reach every branch of decide().
EXAMPLES = (
    Example("full-new", "full", Facts(facts.NEW, estimate=1000)),
    Example("full-populated", "full", Facts(facts.POPULATED, estimate=SMALL_TABLE + 1)),
    Example("full-small-lookup", "full", Facts(facts.POPULATED, estimate=1000)),
    Example("incremental", "incremental", Facts(facts.POPULATED)),
    Example("resume-deletes", "incremental", Facts(facts.POPULATED), resume=True, deletes=True),
    Example("schema-drift", "incremental", Facts(facts.POPULATED), drift=True),
    Example("schema-drift-full", "full", Facts(facts.POPULATED, estimate=SMALL_TABLE + 1), drift=True),
    Example("deletes-without-log", "incremental", Facts(facts.EMPTY, log_in_replica=False), deletes=True),
)


@dataclass(frozen=True)
class Place:
    """Where the load reads and writes: the replica database, the target's dialect and raw schema."""

    replica_db: str
    target: ModuleType
    raw_schema: str


def recipe(plan: Plan, situation: Situation, place: Place, store: tracking.Store) -> Recipe:
    """Pure: the steps of one load run, in order."""
    target, table, schema = place.target, plan.table, Ident(place.raw_schema)
    columns = tuple(c.name for c in plan.columns)
    steps: list[Step] = []
    if situation.target == facts.NEW:  # inside the load's transaction: DDL commits (or not) with the data
        steps += [Exec("new table", "analytics", target.render("create_raw_table", schema=schema, table=table,
                                                               columns=plan.columns, key=plan.key)),
                  Exec("new table", "analytics", target.render("create_load_marker_index", schema=schema,
                                                               table=table,
                                                               name=Ident(f"ix_{table}__etl_load_id"[:63])))]
    for column in situation.added:
        steps += [Exec("schema drift", "analytics", target.render("add_column", schema=schema, table=table,
                                                                  column=column)),
                  Note("schema drift", f"column {column.name!r} added to {place.raw_schema}.{table}", log="warning")]
    for column in situation.widened:
        steps += [Exec("schema drift", "analytics", target.render("alter_column_type", schema=schema, table=table,
                                                                  column=column, emptied=False)),
                  Note("schema drift", f"column {column.name!r} widened to {column.pg_type} in "
                                       f"{place.raw_schema}.{table}", log="warning")]
    if situation.resume_after is not None:
        steps.append(Note("resume", facts.resume_note(situation.resume_after), log="info"))
    # Tracking commits with the data, so a commit lost in a server crash loses both: the next run reads
    # the same rows again. Nothing is gained by waiting for the WAL flush.
    steps.append(Exec("always", "analytics", target.render("session_fast_commit")))

    def copy_into(into: Ident, in_schema: Ident | None, branch: str, **kwargs: Any) -> Transfer:
        sink = CopyStream("analytics", target.render("copy_from_stdin", schema=in_schema, table=into,
                                                     columns=columns), feed=target.copy_in, fault="load.during_copy",
                          counts=kwargs.pop("counts", ()))
        return Transfer(branch, _read(plan, situation), sink, label=f"load {table}", estimate=situation.estimate,
                        **kwargs)

    stage = Exec("stage", "analytics", target.render("create_stage", stage=STAGE, schema=schema, table=table))
    if situation.write == "compare":
        context = dict(schema=schema, table=table, stage=STAGE, columns=columns)
        steps += [stage, copy_into(STAGE, None, "compare"),
                  When("compare", "analytics", target.render("load_stage_differs", **context), then=(
                      Exec("compare", "analytics", target.render("truncate", schema=schema, table=table)),
                      Exec("compare", "analytics", target.render("load_replace_from_stage", **context),
                           counts=("rows_written",))),
                      otherwise="full_table refresh: no row changed, raw left as it was")]
    elif situation.write == "replace":
        if situation.target == facts.POPULATED:
            steps.append(Exec("replace", "analytics", target.render("truncate", schema=schema, table=table)))
        for column in situation.retyped:  # after the truncate, in the same transaction: no value to convert
            steps += [Exec("schema drift", "analytics", target.render(
                "alter_column_type", schema=schema, table=table, column=column, emptied=True)),
                Note("schema drift", f"column {column.name!r} rebuilt as {column.pg_type} in "
                                     f"{place.raw_schema}.{table}", log="warning")]
        steps.append(copy_into(table, schema, "replace", counts=("rows_written",)))
    else:
        upsert = target.render("load_upsert", schema=schema, table=table, stage=STAGE, columns=columns,
                               key=plan.key, update_columns=tuple(c for c in columns if c not in plan.key))
        steps.append(copy_into(STAGE, None, "upsert", setup=(stage,),
                               finish=(Exec("upsert", "analytics", upsert, counts=("rows_written",)),)))
    if situation.deletes == "feed":
        steps.append(deletes.feed_step(plan.config, plan.key[0], phase="load", read_on="replica",
                                       log_database=place.replica_db, write_on="analytics", write=target,
                                       write_scope=store.scope, store=store))
    elif situation.deletes == "no log":
        steps.append(Note(deletes.BRANCH, "deletedobject is not in the replica: configure it in tables.yml; "
                                          "no deletes applied"))
    steps += [Track("always", "analytics", store.writer(plan, final=True), fault="load.before_tracking"),
              Commit("always", "analytics", fault_before="load.before_commit")]
    return Recipe("load", plan, situation, tuple(steps))


def _read(plan: Plan, situation: Situation) -> BlockRead:
    """Blocks of COPY text rendered by the replica, in the load's one snapshot; every line ends with the
    load id (raw._etl_load_id)."""

    def render(statement: str, **flags: Any):
        context = {"database": None} if statement == "read_boundary" else {}
        return mysql.render(statement, plan=plan, **context, **flags)

    return BlockRead(
        on="replica", session=(mysql.render("session_blocks"), mysql.render("session_blocks_limit")),
        boundary=Variants(lambda **f: render("read_boundary", **f), ("after_key",), BOUNDARY_LABELS),
        block=Variants(lambda **f: render("load_select", **f), ("after_key", "upto_key"), BLOCK_LABELS),
        params=dict(plan.window_params(), **plan.admission_params(), load_id=LOAD_ID),
        start_after=situation.resume_after, long_rows=_long_rows(plan))


def _long_rows(plan: Plan) -> LongRows | None:
    """A long row read alone (etl/blocks.py fill_long_rows): its line, then each text or binary value in
    parts."""
    longs = [(i, c) for i, c in enumerate(plan.columns) if c.copy_kind in ("text", "unsupported", "binary")]
    if not longs:
        return None
    return LongRows(
        row=Variants(lambda: mysql.render("load_row_alone", plan=plan), (), LONG_ROW_LABELS),
        values=tuple(LongValue(i, "copy binary" if c.copy_kind == "binary" else "copy text",
                               Variants(partial(mysql.render, "load_value_part", plan=plan, column=c), (),
                                        LONG_PART_LABELS)) for i, c in longs))


# ---------------------------------------------------------------- running it

def prepare(settings: Settings, replica: Any, analytics: Any, config: TableConfig, *, full: bool = False,
            strategy: str | None = None) -> Recipe:
    """Gather the facts (read-only), decide the situation, make the recipe. `etl render` uses it too."""
    target = for_url(settings.analytics_url)
    rep_db, schema_name = settings.replica_url.database, settings.raw_schema
    schema = mysql.reflect_table(replica, rep_db, config.name)
    if schema is None:
        raise SchemaError(f"table {config.name!r} does not exist in the replica database {rep_db}: run `etl copy` first")
    schema = target.map_table(schema)
    existing = target.reflect_columns(analytics, schema_name, config.name)
    drift = facts.Drift()
    if existing:
        drift = facts.drift(schema, existing, lambda col, t: target.type_change(target.column_type(col), t))
    store = tracking.for_phase(settings, "load")
    state = store.read_state(analytics, "load", config.name)
    copy_state = tracking.for_phase(settings, "copy").read_state(replica, "copy", config.name)
    horizon = facts.copied_horizon(replica, rep_db, config, schema, copy_state)
    plan = make_plan("load", config, schema, state, horizon, force_full=full, strategy_override=strategy,
                     target_exists=bool(existing), refresh=drift.refresh_reason("at the source"))
    if drift.narrowed and plan.strategy != "full":
        raise SchemaError(drift.refusal(config.name, "the replica", f"{schema_name}.{config.name}"))
    if drift.notes:
        plan = replace(plan, warnings=plan.warnings + drift.notes)

    found_target = facts.target_state(analytics, target, store.scope, plan.table, bool(existing))
    resume_after = None
    if found_target != facts.NEW:  # raw is the load's target
        resume_after = facts.resume_point(replica, rep_db, plan, analytics, target, store.scope)
    estimate = mysql.row_estimate(replica, rep_db, plan.table) if plan.strategy == "full" else None
    log_in_replica = True
    if config.delete_detection == "deletedobject":
        log_in_replica = mysql.reflect_table(replica, rep_db, "deletedobject") is not None
    found = Facts(target=found_target, added=drift.added, resume_after=resume_after, estimate=estimate,
                  log_in_replica=log_in_replica, widened=drift.widened, narrowed=drift.narrowed)
    return recipe(plan, decide(plan, found), Place(rep_db, target, schema_name), store)


def _connect(settings: Settings) -> tuple[Any, Any]:
    replica = mysql.connect(settings.replica_url, role="replica", raw_text=True)
    try:
        analytics = for_url(settings.analytics_url).connect(settings.analytics_url)
    except BaseException:
        replica.close()
        raise
    return replica, analytics


def preview(settings: Settings, config: TableConfig, *, strategy: str | None = None) -> Recipe:
    """`etl render load TABLE`: the recipe a run would follow now; changes nothing."""
    replica, analytics = _connect(settings)
    try:
        return prepare(settings, replica, analytics, config, strategy=strategy)
    finally:
        replica.close()
        analytics.close()


def load_table(settings: Settings, config: TableConfig, run_id: str, *, full: bool = False,
               strategy: str | None = None) -> tracking.Outcome:
    replica, analytics = _connect(settings)
    try:
        # Rows the copy rejected and moved later: their watermark values lie behind the load's, so only a
        # full reload takes them to raw (rare: after max_allowed_packet was raised on the replica).
        rejects = tracking.store(settings, "replica").rejects(config.name)
        moved = rejects.moved_keys(replica)
        replica.rollback()
        if moved and not full:
            log.warning("%s: %d row(s) the copy rejected have moved since (%s); the table is reloaded in full",
                        config.name, len(moved), ", ".join(moved[:3]))
            full = True
        mysql.run(replica, "start_snapshot")
        started = tracking.utc_now()
        try:
            planned = prepare(settings, replica, analytics, config, full=full, strategy=strategy)
        except Exception as exc:  # before any data moves: recorded all the same
            tracking.for_phase(settings, "load").record_unplanned(analytics, "load", config, run_id, started, exc)
            raise
        outcome = executor.run_phase(planned, {"replica": replica, "analytics": analytics}, run_id=run_id,
                                     store=tracking.for_phase(settings, "load"), tracked_on="analytics")
        replica.rollback()  # the end of the load's snapshot
        if moved:  # in raw now
            with replica.cursor() as cur:
                rejects.forget_loaded(cur, moved)
            replica.commit()
        return outcome
    finally:
        replica.close()
        analytics.close()
