"""The phases' pure decisions (decide: facts -> situation), their examples' coverage of every branch, and
the executor running recipes against fake connections."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace

import pytest

from etl import executor, tracking
from etl.config import TableConfig
from etl.dialects import mysql, postgres
from etl.errors import PhaseError
from etl.phases import copy, facts, load
from etl.plan import Horizon, Plan, StoredState, make_plan
from etl.recipe import LOAD_ID, Recipe, Transfer
from etl.render import Ident
from etl.schema import Column, TableSchema
from tests import snapshot_cases as sc
from tests.fakes import FakeConn

NEW, EMPTY, POPULATED = facts.NEW, facts.EMPTY, facts.POPULATED


def col(name: str, data_type: str, column_type: str | None = None) -> Column:
    text = data_type == "varchar"
    return Column(name=Ident(name), data_type=data_type, column_type=column_type or data_type, nullable=True,
                  default=None, extra="", charset="utf8mb4" if text else None,
                  collation="utf8mb4_general_ci" if text else None, precision=None, scale=None,
                  char_length=20 if text else None)


#: A small table: an integer key, a timestamp watermark, a text column.
TINY = TableSchema(schema="src", name=Ident("tiny"), engine="MyISAM", estimated_rows=10, columns=(
    col("Id", "bigint", "bigint(20)"), col("Stamp", "timestamp"), col("Note", "varchar", "varchar(20)")),
    primary_key=(Ident("Id"),))
HORIZON = Horizon(timestamp_upper=dt.datetime(2025, 6, 1, 12), datetime_upper=dt.datetime(2025, 6, 1, 12),
                  date_upper=dt.date(2025, 6, 1), integer_max={"Id": 100})


def tiny_config(**overrides) -> TableConfig:
    values = dict(name="tiny", primary_key=("Id",), incremental_columns=("Id", "Stamp"),
                  primary_incremental_column="Stamp", extraction_strategy="incremental", batch_size=100)
    return TableConfig(**{**values, **overrides})


def tiny_plan(phase: str, strategy: str, config: TableConfig | None = None) -> Plan:
    config = config or tiny_config()
    schema = mysql.map_table(TINY) if phase == "copy" else postgres.map_table(TINY)
    state = StoredState(status="success", primary_column_name=config.primary_incremental_column,
                        last_primary_value="2025-05-01 00:00:00" if config.primary_incremental_column else None,
                        column_values={} if config.primary_incremental_column else {"Id": "5", "Stamp": "2025-05-01 00:00:00"})
    return make_plan(phase, config, schema, state, HORIZON, strategy_override=strategy)


def make(phase: str, p: Plan, found) -> Recipe:
    module = sc.PHASES[phase]
    place = copy.Place("src", "rep") if phase == "copy" else load.Place("rep", postgres, "raw")
    return module.recipe(p, module.decide(p, found), place, tracking.for_phase(sc.SETTINGS, phase))


# ---------------------------------------------------------------- decide

@pytest.mark.parametrize("strategy, found, expected", [
    ("full", copy.Facts(True, NEW), dict(into="table", rows="server-side", stage=False, checkpoint=False)),
    ("full", copy.Facts(True, POPULATED), dict(into="shadow", rows="server-side", checkpoint=False)),
    ("full", copy.Facts(False, EMPTY), dict(into="table", rows="blocks", stage=False, checkpoint=False)),
    ("full", copy.Facts(False, POPULATED, local_infile=False), dict(into="shadow", rows="row by row")),
    ("primary", copy.Facts(False, POPULATED), dict(into="table", rows="blocks", stage=True, checkpoint=True)),
    ("primary", copy.Facts(True, POPULATED), dict(rows="server-side", checkpoint=False)),
    ("primary", copy.Facts(False, POPULATED, local_infile=False), dict(rows="row by row", checkpoint=True)),
])
def test_copy_decides_where_and_how_rows_go(strategy, found, expected) -> None:
    situation = copy.decide(tiny_plan("copy", strategy), found)
    assert {k: getattr(situation, k) for k in expected} == expected


def test_copy_resumes_and_adds_columns_only_on_a_table_with_rows() -> None:
    p, key, added = tiny_plan("copy", "primary"), (dt.datetime(2025, 5, 1), 7), (TINY.columns[2],)
    assert copy.decide(p, copy.Facts(True, POPULATED, added, key)).resume_after == key
    assert copy.decide(p, copy.Facts(True, EMPTY, added, key)).resume_after is None
    assert copy.decide(p, copy.Facts(True, EMPTY, added)).added == added
    assert copy.decide(p, copy.Facts(True, NEW, added)).added == ()  # the new table has every column


def test_copy_estimate_and_deletes() -> None:
    full = tiny_plan("copy", "full")
    assert copy.decide(full, copy.Facts(False, NEW, estimate=9)).estimate == 9
    assert copy.decide(full, copy.Facts(True, NEW, estimate=9)).estimate is None
    feed = tiny_plan("copy", "primary", tiny_config(delete_detection="deletedobject", deleted_object_type=3))
    assert copy.decide(feed, copy.Facts(True, POPULATED)).deletes
    assert not copy.decide(tiny_plan("copy", "primary"), copy.Facts(True, POPULATED)).deletes


@pytest.mark.parametrize("strategy, config, found, write", [
    ("full", tiny_config(extraction_strategy="full_table"), load.Facts(POPULATED, estimate=10), "compare"),
    ("full", tiny_config(extraction_strategy="full_table"), load.Facts(POPULATED, estimate=load.SMALL_TABLE + 1),
     "replace"),
    ("full", tiny_config(extraction_strategy="full_table"), load.Facts(EMPTY, estimate=10), "replace"),
    ("full", tiny_config(), load.Facts(POPULATED, estimate=10), "replace"),  # --full of an incremental table
    ("primary", tiny_config(), load.Facts(POPULATED), "upsert"),
    ("primary", tiny_config(), load.Facts(NEW), "upsert"),
])
def test_load_decides_how_raw_is_written(strategy, config, found, write) -> None:
    assert load.decide(tiny_plan("load", strategy, config), found).write == write


def test_load_resumes_on_any_existing_table_and_names_a_missing_log() -> None:
    p, key = tiny_plan("load", "primary"), (dt.datetime(2025, 5, 1), 7)
    assert load.decide(p, load.Facts(EMPTY, resume_after=key)).resume_after == key
    assert load.decide(p, load.Facts(NEW, resume_after=key)).resume_after is None
    feed = tiny_plan("load", "primary", tiny_config(delete_detection="deletedobject", deleted_object_type=3))
    assert load.decide(feed, load.Facts(POPULATED)).deletes == "feed"
    assert load.decide(feed, load.Facts(POPULATED, log_in_replica=False)).deletes == "no log"
    assert load.decide(p, load.Facts(POPULATED)).deletes is None


# ---------------------------------------------------------------- the examples reach every branch

def _shape(recipe: Recipe) -> set[tuple]:
    """What a recipe does, whatever the table: (branch, kind of step, its statements' names)."""
    shape = set()
    for step in recipe.walk():
        names = ()
        if hasattr(step, "statement"):
            statement = step.statement
            names = (statement.name,) if hasattr(statement, "name") else tuple(sorted({s.name for _, s in statement.all()}))
        if isinstance(step, Transfer):
            names = tuple(sorted({step.read.__class__.__name__, step.sink.__class__.__name__}))
        shape.add((step.branch, type(step).__name__, names))
    return shape


def _domain(phase: str):
    """Every combination of facts a phase can gather, for each strategy and table setting."""
    key = (dt.datetime(2025, 5, 1), 7)
    configs = [tiny_config(), tiny_config(primary_incremental_column=None),
               tiny_config(extraction_strategy="full_table"),
               tiny_config(delete_detection="deletedobject", deleted_object_type=3)]
    for config in configs:
        strategies = ("full", "primary" if config.primary_incremental_column else "fallback")
        for strategy in strategies:
            p = tiny_plan(phase, strategy, config)
            added = p.columns[2:]  # mapped by the phase's target, as prepare maps them
            if phase == "copy":
                for same, target, resume, infile, drift in itertools.product(
                        (True, False), (NEW, EMPTY, POPULATED), (None, key), (True, False), ((), added)):
                    yield p, copy.Facts(same, target, drift, resume, infile, 10, widened=drift, narrowed=drift)
            else:
                for target, resume, estimate, log, drift in itertools.product(
                        (NEW, EMPTY, POPULATED), (None, key), (10, load.SMALL_TABLE + 1), (True, False), ((), added)):
                    yield p, load.Facts(target, drift, resume, estimate, log, widened=drift, narrowed=drift)


@pytest.mark.parametrize("phase", ["copy", "load"])
def test_the_examples_reach_every_branch_decide_can_take(phase: str) -> None:
    """Whatever the facts, a recipe does nothing that no example (and so no golden file) shows."""
    module = sc.PHASES[phase]
    situations = {(p, module.decide(p, found)) for p, found in _domain(phase)}  # many facts, one situation
    place = copy.Place("src", "rep") if phase == "copy" else load.Place("rep", postgres, "raw")
    store = tracking.for_phase(sc.SETTINGS, phase)
    reachable = set().union(*(_shape(module.recipe(p, situation, place, store)) for p, situation in situations))
    shown = set().union(*(_shape(c.recipe) for c in sc.cases() if c.phase == phase))
    assert reachable - shown == set()


# ---------------------------------------------------------------- the executor

class Replica:
    """The replica side of a load: a block read that finds `blocks` (rows, data) and nothing after."""

    def __init__(self, *blocks_: tuple[int, bytes]):
        self.blocks = list(blocks_)
        self.conn = FakeConn(self.answer)

    def answer(self, sql: str):
        if "group_concat_max_len =" in sql:
            return []
        if "LEAST(" in sql:
            return [("1000000",)]
        if "OFFSET" in sql:
            return []  # no boundary: the whole window is one block
        if "deletedobject" in sql or "IN (" in sql:
            return []
        rows, data = self.blocks.pop(0) if self.blocks else (0, None)
        return [(rows, 0, "2025-05-31 10:00:00", data)]


def run_load(p: Plan, found: load.Facts, replica: Replica, analytics: FakeConn) -> tracking.Outcome:
    recipe = make("load", p, found)
    outcome = tracking.Outcome(plan=p, run_id="run", started_at=dt.datetime(2025, 6, 1), history_id=41)
    executor.run(recipe, {"replica": replica.conn, "analytics": analytics}, outcome, values={LOAD_ID.name: 41})
    return outcome


def test_an_incremental_load_stages_copies_upserts_and_tracks_in_one_transaction() -> None:
    analytics = FakeConn(rowcount=2)
    replica = Replica((2, b"1\t2025-05-31 10:00:00\ta\t41\n2\t2025-05-31 10:00:00\tb\t41"))
    outcome = run_load(tiny_plan("load", "primary"), load.Facts(POPULATED), replica, analytics)
    sql = analytics.sql
    assert sql[0].startswith("SET LOCAL synchronous_commit")
    assert sql[1].startswith("CREATE TEMPORARY TABLE") and sql[2].startswith("COPY ")
    assert analytics.executed[2][1]["copied"] == b"1\t2025-05-31 10:00:00\ta\t41\n2\t2025-05-31 10:00:00\tb\t41\n"
    assert sql[3].startswith('INSERT INTO "raw"."tiny"')
    assert (outcome.rows_read, outcome.rows_written) == (2, 2)
    assert outcome.new_values == {"Stamp": dt.datetime(2025, 5, 31, 10)}
    statuses = [p for s, p in analytics.executed if "etl_load_status" in s]
    assert statuses[-1]["last_primary_value"] == "2025-05-31 10:00:00" and statuses[-1]["rows_loaded"] == 2
    assert [p["id"] for s, p in analytics.executed if "etl_run_history" in s] == [41]
    assert analytics.commits == 1
    (block,) = [p for s, p in replica.conn.executed if "GROUP_CONCAT" in s]
    assert block["load_id"] == 41  # the RunValue, resolved


def test_a_load_with_nothing_to_read_writes_no_stage_and_no_rows_but_tracks() -> None:
    analytics = FakeConn()
    outcome = run_load(tiny_plan("load", "primary"), load.Facts(POPULATED), Replica(), analytics)
    assert not any(s.startswith(("CREATE TEMPORARY", "COPY", 'INSERT INTO "raw"."tiny"')) for s in analytics.sql)
    assert (outcome.rows_read, outcome.rows_written) == (0, 0)
    assert any("etl_run_history" in s for s in analytics.sql) and analytics.commits == 1


@pytest.mark.parametrize("differs", [True, False])
def test_a_small_lookup_is_rewritten_only_when_a_row_changed(differs: bool) -> None:
    p = tiny_plan("load", "full", tiny_config(extraction_strategy="full_table"))
    analytics = FakeConn(lambda sql: [(differs,)] if "EXCEPT ALL" in sql else [], rowcount=1)
    outcome = run_load(p, load.Facts(POPULATED, estimate=10), Replica((1, b"1\t\\N\tx\t41")), analytics)
    assert any(s.startswith("TRUNCATE") for s in analytics.sql) is differs
    assert outcome.rows_written == (1 if differs else 0)
    assert ("full_table refresh: no row changed, raw left as it was" in outcome.notes) is not differs


def test_a_copy_writes_each_block_to_a_file_loads_it_and_commits_it_with_a_checkpoint() -> None:
    p = tiny_plan("copy", "primary")
    recipe = make("copy", p, copy.Facts(False, POPULATED))
    source = Replica((1, b"1\t2025-05-31 10:00:00\ta")).conn
    loaded = []

    def replica_answer(sql: str):
        return []

    replica = FakeConn(replica_answer, rowcount=1)
    original = replica.cursor

    def cursor(*args):
        cur = original(*args)
        execute = cur.execute

        def watching(sql, params=None):
            if sql.startswith("LOAD DATA"):
                loaded.append(open(params["path"], "rb").read())
            return execute(sql, params)

        cur.execute = watching
        return cur

    replica.cursor = cursor
    outcome = tracking.Outcome(plan=p, run_id="run", started_at=dt.datetime(2025, 6, 1))
    executor.run(recipe, {"source": source, "replica": replica}, outcome)
    assert loaded == [b"1\t2025-05-31 10:00:00\ta\n"]
    order = [s.split()[0] for s in replica.sql]
    assert order[0] == "SELECT" and "etl_copy_rejects" in replica.sql[0]  # rejected rows to retry: none
    assert order[1:4] == ["DROP", "CREATE", "DELETE"]            # the stage, then cleared for the block
    assert order[4:7] == ["LOAD", "SHOW", "INSERT"]              # loaded, its warnings asked, upserted
    assert replica.commits == 2                                  # the block with its checkpoint, then the end
    statuses = [p["copy_status"] for s, p in replica.executed if "etl_copy_status" in s]
    assert statuses == ["running", "success"]
    assert source.commits == 1                                   # no read transaction spans two blocks
    assert outcome.rows_written == 1 and outcome.rows_read == 1


def test_a_block_whose_load_cut_a_value_fails_before_it_commits() -> None:
    """LOAD DATA LOCAL keeps a value cut or clamped with a warning, whatever the sql_mode: a warning fails."""
    p = tiny_plan("copy", "primary")
    recipe = make("copy", p, copy.Facts(False, POPULATED))
    source = Replica((1, b"1\t2025-05-31 10:00:00\ta")).conn

    def replica_answer(sql: str):
        if sql.startswith("SHOW WARNINGS"):
            return [("Note", 1, "fine"), ("Warning", 1265, "Data truncated for column 'c' at row 1")]
        return []

    replica = FakeConn(replica_answer, rowcount=1)
    outcome = tracking.Outcome(plan=p, run_id="run", started_at=dt.datetime(2025, 6, 1))
    with pytest.raises(PhaseError, match="Data truncated for column 'c' at row 1"):
        executor.run(recipe, {"source": source, "replica": replica}, outcome)
    assert replica.commits == 0 and not any(s.startswith("INSERT") for s in replica.sql)


def test_the_row_by_row_copy_moves_a_row_longer_than_both_servers_packet_in_parts() -> None:
    """The batch holds the long value back (bound long_row), the source gives it in parts, the replica takes
    the row with it empty and then each part appended by key: every statement far below max_allowed_packet,
    the parts joined are the value, byte for byte, in the batch's transaction."""
    from tests import call_sites

    found = call_sites.row_in_parts()
    source, replica, data = found["source"], found["replica"], found["data"]
    batch = next(p for sql, p in source.executed if "LIMIT" in sql)
    assert batch["long_row"] == 1 << 20                             # a quarter of the source's 4 MiB
    parts = [p for sql, p in source.executed if "SUBSTRING" in sql]
    assert len(parts) == 9 and all(p["r0"] == "7" for p in parts)   # 512 Ki characters each, the last one short
    writes = [(sql.split()[0], p) for sql, p in replica.executed if sql.split()[0] in ("INSERT", "UPDATE")][:8]
    assert writes[0][0] == "INSERT" and writes[0][1]["v1"] == b""
    appended = [p["part"] for kind, p in writes[1:]]
    assert all(kind == "UPDATE" for kind, _ in writes[1:]) and all(len(part) <= 1 << 20 for part in appended)
    assert b"".join(appended) == data
    assert all(part.decode() for part in appended)                  # each cut on a character boundary
    assert replica.commits == 2 and found["outcome"].rows_written == 1


def test_the_row_by_row_copy_rejects_a_value_longer_than_the_replicas_packet() -> None:
    """The server builds no value longer than its max_allowed_packet from a statement (CONCAT stops there):
    such a row is recorded as rejected (key, column, size, the setting) in the batch's transaction, with the
    batch's checkpoint, and nothing of it is written; the rest of the table goes on."""
    from tests import call_sites

    found = call_sites.row_in_parts(replica_packet=4 << 20)
    replica = found["replica"]
    rejects = [p for s, p in replica.executed if s.startswith("INSERT INTO etl_copy_rejects")]
    assert len(rejects) == 1
    assert {k: rejects[0][k] for k in ("table_name", "key_value", "column_name", "size_bytes", "setting")} == {
        "table_name": "patient", "key_value": '["7"]', "column_name": "LName", "size_bytes": 7_200_000,
        "setting": "max_allowed_packet on the replica (4,194,304 bytes)"}
    assert "raise max_allowed_packet on the replica" in rejects[0]["error"]
    assert not [s for s, _ in replica.executed if "`patient`" in s]   # nothing of the row written
    statuses = [p["copy_status"] for s, p in replica.executed if "etl_copy_status" in s]
    assert statuses == ["running", "success"] and replica.commits == 2
    assert found["outcome"].rows_written == 0
    assert any("rejected" in note for note in found["outcome"].notes)


def test_a_rejected_row_is_retried_first_and_marked_once_it_moves() -> None:
    """Every copy run first reads each rejected key alone and writes it; a row that moved is marked so in
    the transaction that wrote it (the load reloads the table, then forgets it), a row gone at the source
    loses its entry."""
    from etl.recipe import Retry
    from etl.tracking import Rejects

    p = tiny_plan("copy", "primary")
    recipe = make("copy", p, copy.Facts(False, POPULATED, local_infile=False))
    retry = next(s for s in recipe.steps if isinstance(s, Retry))
    assert isinstance(retry.rejects, Rejects) and recipe.steps.index(retry) < len(recipe.steps) - 3
    row = tuple("1" if c.name in p.key else None for c in p.columns)

    def source_answer(sql: str):
        if "max_allowed_packet" in sql:
            return [("67108864",)]
        if source.executed[-1][1].get("r0") == "1":   # key 1 is there, key 2 is gone
            return [row + (("0",) if retry.long_values else ())]
        return []

    source = FakeConn(source_answer)
    replica = FakeConn(lambda sql: [('["1"]', "c", 9, "s", "e", None, None), ('["2"]', "c", 9, "s", "e", None, None)]
                       if "FROM etl_copy_rejects" in sql else [])
    outcome = tracking.Outcome(plan=p, run_id="run", started_at=dt.datetime(2025, 6, 1))
    executor.Executor(recipe, {"source": source, "replica": replica}, outcome, {}).step(retry)
    keys = [p["r0"] for s, p in source.executed if "r0" in p]
    assert keys == ["1", "2"]
    written = [p for s, p in replica.executed if "ON DUPLICATE KEY" in s and "etl_copy_rejects" not in s]
    moved = [p["key_value"] for s, p in replica.executed if s.startswith("UPDATE etl_copy_rejects SET moved_at")]
    forgotten = [p["key_value"] for s, p in replica.executed if s.startswith("DELETE FROM etl_copy_rejects")]
    assert len(written) == 1 and moved == ['["1"]'] and forgotten == ['["2"]']  # 2 is gone at the source
    assert outcome.rows_written == 1 and replica.commits >= 1


def test_the_row_by_row_copy_refuses_a_row_longer_than_the_replicas_packet_by_key_and_setting() -> None:
    """A row longer than max_allowed_packet with no value that moves in parts (medium and long text and
    blobs do): the server would just close the connection on it; the row is named before it is sent.
    Short batches never ask."""
    from etl.blocks import Batch
    from etl.errors import PhaseError
    from etl.recipe import ExecRows

    config = sc.demo_config()["patient"]
    example = next(e for e in copy.EXAMPLES if e.name == "row-by-row-incremental")
    recipe = sc.recipe_for("copy", config, example)
    step = next(s for s in recipe.walk() if isinstance(s, ExecRows))
    columns = [c.name for c in recipe.plan.columns]
    key_at = columns.index(recipe.plan.key[0])

    def row(key: int, text: str) -> tuple:
        values = [None] * len(columns)
        values[key_at], values[key_at + 1] = key, text
        return tuple(values)

    replica = FakeConn(lambda sql: [("2097152",)] if "max_allowed_packet" in sql else [])
    outcome = tracking.Outcome(plan=recipe.plan, run_id="r", started_at=dt.datetime(2025, 1, 1))
    run = executor.Executor(recipe, {"replica": replica, "source": FakeConn()}, outcome, {})
    run.step(step, Batch(rows=1, maxima=(), values=[row(1, "short")]))
    assert not any("max_allowed_packet" in sql for sql, _ in replica.executed)
    with pytest.raises(PhaseError, match=r"^patient: the row \{'PatNum': 7\} holds 3,145,728 bytes, more than the "
                                         r"replica's max_allowed_packet \(2,097,152\)"):
        run.step(step, Batch(rows=2, maxima=(), values=[row(1, "short"), row(7, "é" * (3 << 19))]))
    assert sum(sql.lstrip().startswith("INSERT") for sql, _ in replica.executed) == 1  # the short batch only
