"""etl.versions: the head of a lineage read from its revision files (no Alembic import)."""

from __future__ import annotations

from etl import versions


def _write(folder, name, revision, down):
    (folder / "versions").mkdir(parents=True, exist_ok=True)
    down_text = "None" if down is None else f'"{down}"'
    (folder / "versions" / f"{name}.py").write_text(f'revision = "{revision}"\ndown_revision = {down_text}\n')


def test_the_head_is_the_revision_no_other_revises(tmp_path) -> None:
    _write(tmp_path, "0001_a", "0001_a", None)
    _write(tmp_path, "0002_b", "0002_b", "0001_a")
    _write(tmp_path, "0003_c", "0003_c", "0002_b")
    assert versions.head(tmp_path) == "0003_c"


def test_two_heads_or_an_unreadable_file_leave_it_to_alembic(tmp_path) -> None:
    _write(tmp_path, "0001_a", "0001_a", None)
    _write(tmp_path, "0002_b", "0002_b", "0001_a")
    _write(tmp_path, "0002_c", "0002_c", "0001_a")
    assert versions.head(tmp_path) is None
    (tmp_path / "versions" / "0002_c.py").write_text('revision = "0002_c"\ndown_revision = ("0001_a", "0002_b")\n')
    assert versions.head(tmp_path) is None


def test_the_shipped_lineages_have_one_head_each() -> None:
    for folder in versions.LINEAGES.values():
        assert versions.head(folder) is not None
