"""tables.yml -> frozen, typed per-table settings.

Every problem in the file is collected and reported at once, each on one line naming the file, the
table and the key (``tables.yml: table 'patient': batch_size: expected a positive integer, got 'x'``).
A key this tool does not know is an error with a suggestion (``delete_detecton`` -> "did you mean
'delete_detection'?"): a misspelt setting silently ignored would change what is copied. Two kinds of keys
are accepted and ignored: the informational keys real configurations carry (:data:`INFORMATIONAL_KEYS`,
such as ``estimated_rows`` and ``sync_profile``, and ``x_discover``, which ``etl discover`` writes), and any
key starting with ``x_`` (a user's own notes). Whether the configured columns exist is checked against the
live source before every run (etl/check.py ``check_columns``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from etl.errors import ConfigError

#: extraction_strategy values. incremental_chunked is accepted as another name of incremental (real
#: configurations carry it; incremental reads are always in chunks of batch_size rows).
STRATEGIES = ("full_table", "incremental", "incremental_chunked")
DELETE_DETECTION = ("none", "reconcile", "deletedobject")
DEFAULT_BATCH_SIZE = 10_000
#: The settings of a table entry (what TableConfig is built from).
SETTING_KEYS = ("primary_key", "incremental_columns", "primary_incremental_column", "extraction_strategy",
                "batch_size", "delete_detection", "deleted_object_type")
#: Keys of a table entry that are read by people, not by this tool: row counts and profiles from the
#: clinic fact sheet (estimated_rows, sync_profile, engine), notes (description, monitoring) and
#: `etl discover`'s own record of its choices (x_discover). Any other key starting with x_ is accepted too.
INFORMATIONAL_KEYS = ("estimated_rows", "sync_profile", "engine", "description", "monitoring", "x_discover")
#: Top-level keys: the tables, and a free-form metadata block (etl discover keeps its state there).
TOP_LEVEL_KEYS = ("tables", "metadata")
USER_PREFIX = "x_"
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")


@dataclass(frozen=True)
class TableConfig:
    name: str
    primary_key: tuple[str, ...]
    incremental_columns: tuple[str, ...]
    primary_incremental_column: str | None  # None: OR fallback over incremental_columns
    extraction_strategy: str
    batch_size: int
    delete_detection: str = "none"
    deleted_object_type: int | None = None  # OpenDental's DeletedObjectType of this table's rows

    @property
    def is_full_table(self) -> bool:
        return self.extraction_strategy == "full_table"


@dataclass(frozen=True)
class EtlConfig:
    path: Path
    tables: dict[str, TableConfig]

    def select(self, names: list[str] | tuple[str, ...] | None) -> list[TableConfig]:
        """The configured tables, or the named ones (each must be configured)."""
        if not names:
            return list(self.tables.values())
        unknown = [n for n in names if n not in self.tables]
        if unknown:
            raise ConfigError(f"{self.path}: table(s) not configured: {', '.join(unknown)}")
        return [self.tables[n] for n in names]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path) -> EtlConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (set ETL_TABLES to the tables.yml to use)") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None
    return parse_config(document, path)


def parse_config(document: Any, path: Path) -> EtlConfig:
    errors: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("tables"), dict):
        raise ConfigError(f"{path}: expected a top-level 'tables:' mapping of table name to settings")
    for key in document:
        if key not in TOP_LEVEL_KEYS and not str(key).startswith(USER_PREFIX):
            errors.append(f"{path}: unknown top-level key {key!r}; {_suggest(key, TOP_LEVEL_KEYS)}")
    if not document["tables"]:
        errors.append(f"{path}: 'tables:' is empty")
    tables: dict[str, TableConfig] = {}
    for name, raw in document["tables"].items():
        where = f"{path}: table {name!r}"
        problems_before = len(errors)
        table = _parse_table(str(name), raw, where, errors)
        if not _PLAIN.fullmatch(str(name)):
            errors.append(f"{where}: the table name is not a plain identifier (letters, digits and _ only)")
        if table is not None and len(errors) == problems_before:
            tables[str(name)] = table
    if errors:
        raise ConfigError("\n".join(errors))
    return EtlConfig(path=path, tables=tables)


def _suggest(key: Any, known: tuple[str, ...]) -> str:
    """The "did you mean" half of an unknown-key message."""
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}? (keys of your own start with {USER_PREFIX})"
    return f"expected one of {', '.join(known)} (keys of your own start with {USER_PREFIX})"


def _column_list(value: Any, where: str, key: str, errors: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f"{where}: {key}: expected a column name or a list of column names, got {value!r}")
        return ()
    for column in value:
        if not _PLAIN.fullmatch(column):
            errors.append(f"{where}: {key}: {column!r} is not a plain identifier")
    return tuple(value)


def _parse_table(name: str, raw: Any, where: str, errors: list[str]) -> TableConfig | None:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
        return None
    for key in raw:
        if key not in SETTING_KEYS and key not in INFORMATIONAL_KEYS and not str(key).startswith(USER_PREFIX):
            errors.append(f"{where}: unknown key {key!r}; {_suggest(key, SETTING_KEYS + INFORMATIONAL_KEYS)}")

    strategy = raw.get("extraction_strategy", "incremental")
    if strategy not in STRATEGIES:
        errors.append(f"{where}: extraction_strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")

    batch = raw.get("batch_size", DEFAULT_BATCH_SIZE)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        errors.append(f"{where}: batch_size: expected a positive integer, got {batch!r}")
        batch = DEFAULT_BATCH_SIZE

    incremental = _column_list(raw.get("incremental_columns", []) or [], where, "incremental_columns", errors)

    primary = raw.get("primary_incremental_column")
    if isinstance(primary, str) and primary.strip().lower() in ("none", "null", ""):
        primary = None
    if primary is not None:
        if not isinstance(primary, str) or not _PLAIN.fullmatch(primary):
            errors.append(f"{where}: primary_incremental_column: expected a column name or none, got {primary!r}")
            primary = None

    if "primary_key" not in raw:
        errors.append(f"{where}: primary_key: missing (the column(s) rows are upserted by)")
    key = _column_list(raw.get("primary_key"), where, "primary_key", errors) if "primary_key" in raw else ()
    if "primary_key" in raw and not key:
        errors.append(f"{where}: primary_key: must name at least one column")

    if strategy != "full_table" and primary is None and not incremental:
        errors.append(f"{where}: incremental_columns: an incremental table with primary_incremental_column "
                      "none needs at least one incremental column")

    deletes = raw.get("delete_detection", "none")
    if deletes not in DELETE_DETECTION:
        errors.append(f"{where}: delete_detection: expected one of {', '.join(DELETE_DETECTION)}, got {deletes!r}")

    object_type = raw.get("deleted_object_type")
    if deletes == "deletedobject" and (isinstance(object_type, bool) or not isinstance(object_type, int)):
        errors.append(f"{where}: deleted_object_type: delete_detection deletedobject needs the integer "
                      f"ObjectType that OpenDental logs this table's deletions under, got {object_type!r}")
    if deletes == "deletedobject" and len(key) != 1:
        errors.append(f"{where}: delete_detection: deletedobject needs a single-column primary_key")

    return TableConfig(
        name=name,
        primary_key=key,
        incremental_columns=incremental,
        primary_incremental_column=primary,
        extraction_strategy=strategy,
        batch_size=batch,
        delete_detection=deletes,
        deleted_object_type=object_type if deletes == "deletedobject" else None,
    )
