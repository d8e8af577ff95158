"""Golden files of the recipes (tests/snapshots/): every example situation of every phase, for every demo
table, made by the phases' own decide() and recipe() and printed as `etl render` prints it.

Regenerate after an intended change with ``make snapshots`` (``python -m tests.snapshot_cases --update``)
and review the diff; a missing golden file fails here, it is never created by the test run.
"""

from __future__ import annotations

import difflib
import re

import pytest

from etl.recipe import (BatchRead, BlockRead, CopyStream, DeleteFeed, Exec, ExecRows, Observe, PerBlock, RunValue,
                        Transfer, When)
from tests import snapshot_cases as sc

CASES = sc.cases()
FILES = sc.expected_files()
UPDATE_HINT = "run `make snapshots` (python -m tests.snapshot_cases --update) and review the diff"


def _check(path, expected: str) -> None:
    if not path.is_file():
        pytest.fail(f"golden file {path} is missing; {UPDATE_HINT}")
    golden = path.read_text(encoding="utf-8")
    if golden != expected:
        relpath = path.relative_to(sc.SNAPSHOT_DIR)
        diff = "".join(difflib.unified_diff(golden.splitlines(True), expected.splitlines(True),
                                            f"golden/{relpath}", f"rendered/{relpath}"))
        pytest.fail(f"rendered recipe differs from the golden file; {UPDATE_HINT}\n{diff}")


@pytest.mark.parametrize("path", sorted(FILES), ids=[str(p.relative_to(sc.SNAPSHOT_DIR)) for p in sorted(FILES)])
def test_rendered_recipes_match_golden_files(path) -> None:
    _check(path, FILES[path])


def test_no_golden_file_without_a_case() -> None:
    stale = [str(p.relative_to(sc.SNAPSHOT_DIR)) for p in sc.golden_files() if p not in FILES]
    assert not stale, f"golden files that no case renders any more ({UPDATE_HINT}): {stale}"


def test_every_golden_file_carries_the_generated_header() -> None:
    wrong = [p.name for p in sc.golden_files() if not p.read_text(encoding="utf-8").startswith(sc.HEADER + "\n")]
    assert not wrong


def test_missing_golden_file_fails(tmp_path, monkeypatch) -> None:
    """A case whose golden file does not exist fails instead of writing one."""
    monkeypatch.setattr(sc, "SNAPSHOT_DIR", tmp_path)
    case = CASES[0]
    assert not case.path.exists()
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        _check(case.path, sc.render_recipe(case))
    assert not case.path.exists()


def test_cases_cover_every_table_and_every_example() -> None:
    covered = {(c.phase, c.table, c.example.name) for c in CASES}
    for table in sc.demo_config():
        for phase, module in sc.PHASES.items():
            for example in module.EXAMPLES:
                if not example.resume:  # a resume example needs a plan that can resume (checked below)
                    assert (phase, table, example.name) in covered, (phase, table, example.name)
    for phase, module in sc.PHASES.items():
        for example in module.EXAMPLES:
            assert any(c.example == example for c in CASES if c.phase == phase), example.name


def test_a_resume_example_is_left_out_exactly_where_a_plan_cannot_resume() -> None:
    # securitylog's watermark is its key; the full_table lookups follow their integer keys.
    resumable = {c.table for c in CASES if c.example.resume}
    assert resumable == {"procedurecode", "patient", "procedurelog", "claimproc", "payment", "paysplit", "commlog"}
    for case in CASES:
        if case.example.resume:
            start = case.recipe.situation.resume_after
            assert start is not None and len(start) == len(case.recipe.plan.order)


def test_same_server_copies_server_side_and_separate_servers_stream() -> None:
    for case in CASES:
        if case.phase != "copy":
            continue
        names = {s.name for s in case.recipe.statements()}
        if case.example.facts.same_server:
            assert "mysql/copy_insert_select" in names and "mysql/copy_select" not in names, case.id
        elif case.example.facts.local_infile:
            assert "mysql/copy_select" in names and "mysql/copy_insert_select" not in names, case.id
        else:
            assert "mysql/copy_select_rows" in names and "mysql/copy_load_infile" not in names, case.id


# Binds the executor passes besides the recipe's own values: keyset values (k: after, u: up to), the
# boundary's offset, the batch size.
_KEYSET = re.compile(r"^(k\d+|u\d+)$")


def _reads(case: sc.Case):
    return [s for s in case.recipe.walk() if isinstance(s, Transfer)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_step_supplies_exactly_the_binds_of_its_statements(case: sc.Case) -> None:
    """The two-way bind check every statement meets when it runs, made here for every step of the recipe:
    what the recipe holds (or the executor adds: keysets, offset, batch size) is exactly what it binds."""
    plan = case.recipe.plan
    order = {f"k{i}" for i in range(len(plan.order))}
    upto = {f"u{i}" for i in range(len(plan.order))}
    for step in case.recipe.walk():
        if isinstance(step, (Exec, Observe)):
            assert step.statement.binds == set(step.params), (case.id, step.statement.name)
        elif isinstance(step, ExecRows):
            assert step.statement.binds == set(step.names)
        elif isinstance(step, When):
            assert step.check.binds == frozenset()
        elif isinstance(step, DeleteFeed):
            assert step.log.binds == {"object_type", "after", "batch_size"}
            assert step.existing.binds == step.delete.binds == {"keys"}
        elif isinstance(step, Transfer):
            read = step.read
            window = set(plan.window_params())
            if isinstance(read, BlockRead):
                for (after,), statement in zip(read.boundary.labels, (s for _, s in read.boundary.all())):
                    assert statement.binds == window | {"offset"} | (order if after else set())
                long = {"long_row", "long_escaped"} if read.long_rows is not None else set()
                for (after, bounded), statement in zip(read.block.labels, (s for _, s in read.block.all())):
                    assert statement.binds == set(read.params) | (order if after else set()) | (
                        upto if bounded else set()) | long
                if read.long_rows is not None:  # etl/blocks.py fill_long_rows: the key r<i>, the parts
                    key = {f"r{i}" for i in range(len(plan.key))}
                    assert read.long_rows.row.get().binds == key | ({"load_id"} if case.phase == "load" else set())
                    for value in read.long_rows.values:
                        assert value.part.get().binds == key | {"part_start", "part_length"}
                assert set(read.params) - window == set(plan.admission_params()) | (
                    {"load_id"} if case.phase == "load" else set())
            else:
                assert isinstance(read, BatchRead)
                for (after,), statement in zip(read.batch.labels, (s for _, s in read.batch.all())):
                    assert statement.binds == set(read.params) | {"batch_size"} | (order if after else set())
                assert set(read.params) == window
            if isinstance(step.sink, CopyStream):
                assert step.sink.statement.binds == frozenset()


@pytest.mark.parametrize("case", [c for c in CASES if _reads(c)], ids=[c.id for c in CASES if _reads(c)])
def test_values_known_only_when_the_recipe_runs_are_placeholders(case: sc.Case) -> None:
    """A recipe holds no value it cannot know when it is made: the load id and a block's file are named."""
    for transfer in _reads(case):
        placeholders = {k for k, v in transfer.read.params.items() if isinstance(v, RunValue)}
        assert placeholders == ({"load_id"} if case.phase == "load" else set())
        if isinstance(transfer.sink, PerBlock):
            for step in transfer.sink.steps:
                if isinstance(step, Exec) and "path" in step.statement.binds:
                    assert isinstance(step.params["path"], RunValue)
