"""Golden files of the rendered SQL (tests/snapshots/), one per statement of every demo-table plan.

Regenerate after an intended change with ``make snapshots`` (``python -m tests.snapshot_cases --update``)
and review the diff; a missing golden file fails here, it is never created by the test run.
"""

from __future__ import annotations

import difflib
import re

import pytest

from tests import snapshot_cases as sc

CASES = sc.cases()
UPDATE_HINT = "run `make snapshots` (python -m tests.snapshot_cases --update) and review the diff"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rendered_sql_matches_golden_file(case: sc.Case) -> None:
    if not case.path.is_file():
        pytest.fail(f"golden file {case.path} is missing; {UPDATE_HINT}")
    expected = case.path.read_text(encoding="utf-8")
    actual = sc.render_golden(case.statement)
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            f"golden/{case.relpath}", f"rendered/{case.relpath}"))
        pytest.fail(f"rendered SQL differs from the golden file; {UPDATE_HINT}\n{diff}")


def test_no_golden_file_without_a_case() -> None:
    expected = {c.path for c in CASES}
    stale = [str(p.relative_to(sc.SNAPSHOT_DIR)) for p in sc.golden_files() if p not in expected]
    assert not stale, f"golden files that no case renders any more ({UPDATE_HINT}): {stale}"


def test_every_golden_file_carries_the_generated_header() -> None:
    wrong = [p.name for p in sc.golden_files() if not p.read_text(encoding="utf-8").startswith(sc.HEADER + "\n")]
    assert not wrong


def test_cases_cover_every_table_strategy_and_phase() -> None:
    config = sc.demo_config()
    covered = {(c.table, c.strategy, c.phase) for c in CASES}
    for name, table in config.items():
        for strategy in sc.strategies(table):
            for phase in sc.PHASES:
                assert (name, strategy, phase) in covered
    # appointment is the OR-fallback table of the demo; the others follow one primary column.
    assert {c.table for c in CASES if c.strategy == "fallback"} == {"appointment"}


def test_same_server_copy_runs_server_side_and_separate_servers_stream() -> None:
    same = {c.template for c in CASES if c.phase == "copy-same-server"}
    separate = {c.template for c in CASES if c.phase == "copy-separate-servers"}
    assert "mysql/copy_insert_select" in same and "mysql/copy_select" not in same
    assert "mysql/copy_select" in separate and "mysql/copy_insert_select" not in separate
    assert sc.SETTINGS["same"].same_mysql_server() and not sc.SETTINGS["separate"].same_mysql_server()


# Binds the runner passes besides the plan's window: keyset values (k: after, u: up to), batch size, load
# id, row values, the boundary's offset, the watermark admission binds (m), the block file.
_RUNTIME_BIND = re.compile(r"^(k\d+|u\d+|v\d+|m\d+_(floor|hi)|batch_size|load_id|offset|path)$")
_READS = ("mysql/copy_insert_select", "mysql/copy_select", "mysql/load_select", "mysql/read_boundary")


@pytest.mark.parametrize("case", [c for c in CASES if c.template in _READS],
                         ids=[c.id for c in CASES if c.template in _READS])
def test_window_binds_equal_the_plan_window_params(case: sc.Case) -> None:
    """The filter's binds are exactly what Plan.window_params() supplies (no more, no fewer)."""
    phase = sc.PHASES[case.phase][0]
    plan = sc.plan_for(sc.demo_config()[case.table], phase, case.strategy)
    window_binds = {b for b in case.statement.binds if not _RUNTIME_BIND.match(b)}
    assert window_binds == set(plan.window_params())


@pytest.mark.parametrize("case", [c for c in CASES if c.template in ("mysql/copy_select", "mysql/load_select")],
                         ids=[c.id for c in CASES if c.template in ("mysql/copy_select", "mysql/load_select")])
def test_keyset_binds_follow_the_plan_order(case: sc.Case) -> None:
    """The first batch has no keyset predicate; the following ones one bind per column of plan.order."""
    phase = sc.PHASES[case.phase][0]
    plan = sc.plan_for(sc.demo_config()[case.table], phase, case.strategy)
    keyset = {b for b in case.statement.binds if re.match(r"^k\d+$", b)}
    if case.occurrence == 1:
        assert keyset == set()
    else:
        assert keyset == {f"k{i}" for i in range(len(plan.order))}
    # A block ends at the key its boundary query found (u0, u1, ...).
    assert {b for b in case.statement.binds if re.match(r"^u\d+$", b)} == {f"u{i}" for i in range(len(plan.order))}


def test_golden_statements_convert_to_driver_style() -> None:
    """Every golden statement passes the two-way bind check with exactly its binds."""
    for case in CASES:
        sql, params = case.statement.to_dbapi({b: None for b in case.statement.binds})
        assert not re.search(r"(?<![:\w]):[A-Za-z_]", sql), case.id
        assert set(params) == case.statement.binds


def test_missing_golden_file_fails(tmp_path, monkeypatch) -> None:
    """A case whose golden file does not exist fails instead of writing one."""
    case = CASES[0]
    monkeypatch.setattr(sc, "SNAPSHOT_DIR", tmp_path)
    assert not case.path.exists()
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        test_rendered_sql_matches_golden_file(case)
    assert not case.path.exists()
