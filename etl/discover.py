"""`etl discover`: a complete tables.yml from the live source's information_schema, by explicit rules.

Reading: one query each for the server version, the base tables (engine, row count, average row length,
AUTO_INCREMENT), every column (type, EXTRA: ``auto_increment``, ``on update current_timestamp()``) and
every primary key, plus OpenDental's own version (preference ``DataBaseVersion``) when the source has a
`preference` table. information_schema only: no statement touches a practice table's rows.

The rules (:func:`decide`, pure; RULE_VERSION is recorded in the file and bumped when a rule changes):

1. **Key.** No primary key, or a key column of a type the engine cannot page on (anything but integers,
   char/varchar, date, datetime, timestamp): the table is not configured; it is listed with what to do.
   A key that is not one integer column is configured, but verify and reconcile skip such a table.
2. **Server-maintained timestamp first.** A column with ``ON UPDATE CURRENT_TIMESTAMP`` (OpenDental's
   ``DateTStamp``, ``SecDateTEdit``...) is stamped by the server on every insert and edit: it becomes
   ``primary_incremental_column`` (``DateTStamp``/``SecDateTEdit`` preferred when there are several). A
   column written by OpenDental from the workstation's clock is never chosen when such a column exists.
3. **Append-only logs.** No such column, a single AUTO_INCREMENT integer key and no edit-stamp column
   (rule 4): rows are only ever added (securitylog, procnote...): the key is the watermark.
4. **Otherwise** ``primary_incremental_column: none`` (the OR fallback) with the key (when it is
   AUTO_INCREMENT) and the DATETIME columns OpenDental writes on every edit: edit stamps, by name
   (``Edit``/``TStamp``/``Modified``/``Updated`` in the name: ``DateTSheetEdited``, ``DateTMeasureEdit``).
   Nothing to watch at all: the table is read in full.
5. **full_table** for tables without a server-maintained timestamp of at most FULL_TABLE_MAX_ROWS rows
   (10,000; ``--full-table-rows N``, recorded in the file and reused by later runs): re-reading ~1-3 MB
   each run costs less than the risk of a missed edit, and deletes come for free. Never
   ``incremental_chunked``: ``full_table`` or ``incremental`` only.
6. **batch_size** = BATCH_TARGET_BYTES (16 MiB) / the average row length, rounded down to a thousand,
   within 1,000 .. 100,000 (10,000 when the table is empty). ``estimated_rows`` from the statistics.
7. **delete_detection**: none for full_table (every run replaces the rows) and append-only logs (rows
   are never deleted); ``deletedobject`` with the table's ``deleted_object_type`` where OpenDental logs
   every deletion of the table's rows under their own key (DELETE_LOG); ``reconcile`` everywhere else
   (``none`` when the key is not one integer column, which reconcile needs).

Each choice carries a one-line reason, kept in the entry as ``x_discover.why``.

Merging (re-running on an existing file): an entry is **yours** -- kept exactly as it is -- when it has
no ``x_discover`` block, or when its settings no longer match the ``x_discover.fingerprint`` discover
wrote (you edited it). Every other entry is rewritten by the rules; tables new at the source are added;
entries of tables gone from the source are removed when discover's, kept (and reported) when yours.
``metadata.exclude_tables`` (yours) lists tables discover must leave out. ``metadata.discover`` is
discover's own: the source, the rule version, the tables it could not configure and the columns every
table had, which ``etl discover --check`` compares with the live source (exit 1 when the source has
tables or columns the file does not cover, 0 otherwise).
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from etl.config import SETTING_KEYS, _UniqueKeyLoader, parse_config
from etl.db import fetch_all, fetch_one
from etl.dialects.mysql import connect as mysql_connect
from etl.errors import ConfigError
from etl.render import Ident, render
from etl.schema import INTEGER_TYPES, Column
from etl.settings import Settings

RULE_VERSION = 1
#: Rule 5: tables without a server-maintained timestamp up to this many rows are read in full every run.
FULL_TABLE_MAX_ROWS = 10_000
#: Rule 6: bytes one batch aims at, and its bounds in rows.
BATCH_TARGET_BYTES = 16 << 20
BATCH_MIN_ROWS, BATCH_MAX_ROWS, BATCH_DEFAULT_ROWS = 1_000, 100_000, 10_000

#: Key column types the engine can page on (keyset order, exact comparisons): integers, strings, dates.
PAGEABLE_KEY_TYPES = INTEGER_TYPES + ("char", "varchar", "date", "datetime", "timestamp")
#: Rule 2: server-maintained stamps preferred, by OpenDental's names, when a table has several.
PREFERRED_STAMPS = ("DateTStamp", "SecDateTEdit")
#: Rule 4: a DATETIME whose name says OpenDental rewrites it on every edit (from the workstation's clock).
EDIT_STAMP_NAME = re.compile(r"Edit|TStamp|Modified|Updated", re.IGNORECASE)


@dataclass(frozen=True)
class DeleteLog:
    """One value of OpenDental's DeletedObjectType enum: what `deletedobject.ObjectType` N records."""

    object_type: int
    enum_name: str
    table: str | None
    complete: bool   # every deletion of the table's rows is logged, under the row's own key
    note: str


# OpenDental's DeletedObjectType (OpenDentBusiness/Db/Enumerations.cs). The numbers are identical in every
# release branch of OpenDental's public source repository from 21.1 through 24.3 (21_1 ... 24_3), and the
# first three date back to the table's creation in 5.9. What the log actually receives was read from the
# callers of DeletedObjects.SetDeleted in the same branches:
#   * 21.1 - 24.2 write only ScheduleProv (Schedules.Delete/DeleteMany, and the schedules of a deleted
#     provider or employee) -- a schedule row of another type (blockout, practice note, employee) is
#     deleted without a trace -- and RecallPatNum, whose ObjectNum is the recall's PatNum, not RecallNum;
#   * Appointment (0) is not written: Appointments.Delete records a histappointment row instead (older
#     copies of the public source, before 21.1, did log it);
#   * 3 .. 18 are marked "Deprecated" (a former mobile synchronisation) and never written;
#   * 24.3 marks the DeletedObject class obsolete and writes nothing at all.
# So no table's deletions are completely logged in the versions checked: rule 7 chooses reconcile, and an
# entry is complete only if a version that logs every deletion is verified. Set `delete_detection:
# deletedobject` yourself (the entry then becomes yours) only if your version does.
DELETE_LOG: dict[str, DeleteLog] = {log.table: log for log in (
    DeleteLog(0, "Appointment", "appointment", False,
              "OpenDental 21.1-24.3 do not log appointment deletions in deletedobject (type 0 is unused; "
              "a deleted appointment leaves a histappointment row)"),
    DeleteLog(1, "ScheduleProv", "schedule", False,
              "deletedobject type 1 (ScheduleProv) logs provider schedules only; blockouts and other "
              "schedule rows are deleted without a trace"),
    DeleteLog(2, "RecallPatNum", "recall", False,
              "deletedobject type 2 (RecallPatNum) logs the recall's PatNum, not its RecallNum (type 18, "
              "Recall, is deprecated)"),
    *(DeleteLog(number, name, name.lower(), False,
                f"deletedobject type {number} ({name}) is deprecated: OpenDental 21.1-24.3 never write it")
      for number, name in enumerate(("RxPat", "LabPanel", "LabResult", "DrugUnit", "Medication", "MedicationPat",
                                     "Allergy", "AllergyDef", "Disease", "DiseaseDef", "ICD9", "Provider",
                                     "Pharmacy", "Statement", "Document", "Recall"), start=3)
      if name != "Recall"),
)}

# The settings an entry's fingerprint covers are config.SETTING_KEYS (informational keys such as
# estimated_rows are not settings).

HEADER = """\
# tables.yml written by `etl discover` (rule version {rule_version}); the rules: etl/discover.py and the README.
# Each entry's x_discover.why gives the reason for every choice. An entry is yours -- kept exactly as it is
# when discover runs again -- once you edit its settings (they no longer match x_discover.fingerprint) or
# delete its x_discover block. metadata.exclude_tables (yours) lists tables to leave out;
# metadata.discover is discover's own. `etl discover --check` exits 1 when the source has tables or columns
# this file does not cover (after an OpenDental upgrade): run `etl discover` again then.
"""


# ---------------------------------------------------------------- the live source

@dataclass(frozen=True)
class SourceTable:
    name: str
    engine: str | None
    rows: int
    avg_row_length: int
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Source:
    database: str
    server_version: str
    opendental_version: str | None
    tables: dict[str, SourceTable]


def _column(row: tuple) -> Column:
    return Column(name=Ident(row[0]), data_type=row[1].lower(), column_type=row[2].lower(), nullable=row[3] == "YES",
                  default=row[4], extra=(row[5] or "").lower(), charset=row[6], collation=row[7], precision=row[8],
                  scale=row[9], char_length=row[10])


def read_source(settings: Settings) -> Source:
    """Everything the rules need, from information_schema (and OpenDental's preference table)."""
    conn = mysql_connect(settings.source_url, role="source")
    try:
        return read_source_from(conn, settings.source_url.database)
    finally:
        conn.close()


def read_source_from(conn: Any, database: str) -> Source:
    """read_source on an open connection to the source server."""
    try:
        params = {"schema": database}
        (version,) = fetch_one(conn, render("mysql/discover_server"))
        tables = fetch_all(conn, render("mysql/discover_tables"), params)
        columns: dict[str, list[Column]] = {}
        for row in fetch_all(conn, render("mysql/discover_columns"), params):
            columns.setdefault(row[0], []).append(_column(row[1:]))
        keys: dict[str, list[str]] = {}
        for table, column in fetch_all(conn, render("mysql/discover_keys"), params):
            keys.setdefault(table, []).append(column)
        opendental = None
        pref = columns.get("preference", [])
        if {"PrefName", "ValueString"} <= {c.name for c in pref}:
            row = fetch_one(conn, render("mysql/discover_opendental_version", database=Ident(database),
                                         table=Ident("preference")), {"pref_name": "DataBaseVersion"})
            opendental = _text(row[0]) if row and row[0] is not None else None
    finally:
        conn.rollback()  # information_schema reads only; end the snapshot
    found = {}
    for name, engine, rows, avg, _ in tables:
        name = _text(name)
        found[name] = SourceTable(name=name, engine=_text(engine) if engine else None, rows=int(rows or 0),
                                  avg_row_length=int(avg or 0), columns=tuple(columns.get(name, ())),
                                  primary_key=tuple(keys.get(name, ())))
    return Source(database=database, server_version=_text(version), opendental_version=opendental, tables=found)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


# ---------------------------------------------------------------- the rules

@dataclass(frozen=True)
class Decision:
    """What the rules chose for one table: its tables.yml settings (ordered) and why."""

    table: str
    settings: dict[str, Any]
    why: dict[str, str]
    notes: tuple[str, ...] = ()   # things to tell the user (a key verify cannot use...)


@dataclass(frozen=True)
class Unconfigured:
    table: str
    reason: str  # what is wrong and what to do


def _is_integer(column: Column) -> bool:
    return column.data_type in INTEGER_TYPES


def _server_stamps(table: SourceTable) -> list[Column]:
    stamps = [c for c in table.columns if c.data_type in ("timestamp", "datetime") and "on update" in c.extra]
    return sorted(stamps, key=lambda c: (c.name not in PREFERRED_STAMPS, table.columns.index(c)))


def _edit_stamps(table: SourceTable) -> list[Column]:
    return [c for c in table.columns
            if c.data_type in ("datetime", "timestamp") and "on update" not in c.extra and EDIT_STAMP_NAME.search(c.name)]


def batch_size(avg_row_length: int) -> tuple[int, str]:
    """Rule 6."""
    if avg_row_length <= 0:
        return BATCH_DEFAULT_ROWS, f"no rows yet: the default {BATCH_DEFAULT_ROWS:,} rows per batch"
    rows = BATCH_TARGET_BYTES // avg_row_length // 1000 * 1000
    rows = max(BATCH_MIN_ROWS, min(BATCH_MAX_ROWS, rows))
    return rows, (f"average row {avg_row_length:,} B: {BATCH_TARGET_BYTES >> 20} MiB per batch, "
                  f"{BATCH_MIN_ROWS:,}..{BATCH_MAX_ROWS:,} rows")


def decide(table: SourceTable, delete_log: Mapping[str, DeleteLog] = DELETE_LOG, *,
           full_table_max_rows: int = FULL_TABLE_MAX_ROWS) -> Decision | Unconfigured:
    """The rules of the module docstring, for one table. Pure: no connection, no clock."""
    name = table.name
    if not table.primary_key:
        return Unconfigured(name, "no primary key: the ETL copies, pages and upserts by key. Add one at the source "
                                  "(ALTER TABLE ... ADD PRIMARY KEY), or list the table in metadata.exclude_tables")
    key_columns = [table.column(k) for k in table.primary_key]
    bad = [c for c in key_columns if c.data_type not in PAGEABLE_KEY_TYPES]
    if bad:
        listed = ", ".join(f"{c.name} ({c.column_type})" for c in bad)
        return Unconfigured(name, f"primary key column {listed} cannot be paged on (integers, strings and dates "
                                  "only): add an integer key at the source, or list the table in "
                                  "metadata.exclude_tables")
    why: dict[str, str] = {}
    notes: list[str] = []
    single_integer = len(key_columns) == 1 and _is_integer(key_columns[0])
    key = key_columns[0] if single_integer else None
    auto_key = key if key is not None and "auto_increment" in key.extra else None
    if not single_integer:
        notes.append(f"primary key ({', '.join(table.primary_key)}) is not one integer column: verify and "
                     "reconcile skip this table")

    stamps = _server_stamps(table)
    edits = _edit_stamps(table)
    append_only = False
    if stamps:
        primary = stamps[0].name
        incremental = ([key.name] if key is not None else []) + [primary]
        why["primary_incremental_column"] = (f"{primary} is ON UPDATE CURRENT_TIMESTAMP: the server stamps every "
                                             "insert and edit")
        if len(stamps) > 1:
            why["primary_incremental_column"] += f" (also: {', '.join(c.name for c in stamps[1:])})"
    elif auto_key is not None and not edits:
        append_only = True
        primary, incremental = auto_key.name, [auto_key.name]
        why["primary_incremental_column"] = (f"no server-maintained timestamp; the AUTO_INCREMENT key {primary} "
                                             "only grows and nothing marks an edit: an append-only log")
    else:
        primary = None
        incremental = ([auto_key.name] if auto_key is not None else []) + [c.name for c in edits]
        if incremental:
            why["primary_incremental_column"] = (
                f"no server-maintained timestamp: rows newer on any of {', '.join(incremental)} are read (OR)"
                + (f"; {', '.join(c.name for c in edits)} {'is' if len(edits) == 1 else 'are'} set by OpenDental from "
                   "the workstation's clock on every edit" if edits else ""))
        else:
            why["primary_incremental_column"] = "no server-maintained timestamp, no growing key, no edit stamp"

    if stamps:
        strategy = "incremental"
        why["extraction_strategy"] = f"incremental on the server-maintained {primary}"
    elif table.rows <= full_table_max_rows:
        strategy = "full_table"
        why["extraction_strategy"] = (f"{table.rows:,} rows <= {full_table_max_rows:,} and no server-maintained "
                                      "timestamp: read in full every run (edits and deletes included)")
    elif not incremental:
        strategy = "full_table"
        why["extraction_strategy"] = f"{table.rows:,} rows, but nothing marks a new or changed row: read in full"
    else:
        strategy = "incremental"
        why["extraction_strategy"] = (f"{table.rows:,} rows > {full_table_max_rows:,}: incremental"
                                      + (" on the key" if append_only else " (OR fallback)"))

    rows_per_batch, why["batch_size"] = batch_size(table.avg_row_length)

    log = delete_log.get(name)
    object_type = None
    if strategy == "full_table":
        deletes, why["delete_detection"] = "none", "full_table: every run replaces the rows"
    elif append_only:
        deletes, why["delete_detection"] = "none", "append-only log: rows are not deleted"
    elif not single_integer:
        deletes = "none"
        why["delete_detection"] = ("reconcile needs a single integer key: deletes at the source are not detected "
                                   "(make the table full_table if it is small)")
        notes.append("deletes are not detected (no single integer key)")
    elif log is not None and log.complete:
        deletes, object_type = "deletedobject", log.object_type
        why["delete_detection"] = (f"OpenDental logs every deletion in deletedobject as ObjectType "
                                   f"{log.object_type} ({log.enum_name})")
    else:
        deletes = "reconcile"
        why["delete_detection"] = ((log.note + "; ") if log is not None else
                                   "OpenDental does not log this table's deletions in deletedobject; ") + \
            "keys compared with the source after each load"

    settings: dict[str, Any] = {  # plain str: the names are Ident (a str subclass YAML would not print)
        "primary_key": str(table.primary_key[0]) if len(table.primary_key) == 1 else [str(k) for k in table.primary_key],
        "incremental_columns": [str(c) for c in incremental],
        "primary_incremental_column": str(primary) if primary is not None else "none",
        "extraction_strategy": strategy,
        "batch_size": rows_per_batch,
        "delete_detection": deletes,
    }
    if object_type is not None:
        settings["deleted_object_type"] = object_type
    settings["estimated_rows"] = table.rows
    return Decision(name, settings, why, tuple(notes))


def fingerprint(entry: Mapping[str, Any]) -> str:
    """A short hash of an entry's settings (SETTING_KEYS, normalised as config.py reads them)."""
    def norm(key: str) -> Any:
        value = entry.get(key)
        if key in ("primary_key", "incremental_columns") and isinstance(value, str):
            return [value]
        if key == "primary_incremental_column" and isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
            return None
        return value
    text = json.dumps({key: norm(key) for key in SETTING_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- merging and writing

@dataclass
class Outcome:
    text: str
    changed: bool
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept_yours: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)          # discover's entries of tables gone / excluded
    gone_kept: list[str] = field(default_factory=list)        # your entries of tables gone from the source
    unconfigured: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    diff: str = ""


def _owner(entry: Any) -> str:
    """'discover' when the entry is discover's to rewrite, else 'yours'."""
    if not isinstance(entry, dict) or not isinstance(entry.get("x_discover"), dict):
        return "yours"
    return "discover" if entry["x_discover"].get("fingerprint") == fingerprint(entry) else "yours"


def merge(source: Source, existing_text: str | None, *, path: Path, now: dt.datetime | None = None,
          full_table_max_rows: int | None = None) -> Outcome:
    """The new file text for `source`, merged into `existing_text` (None: no file yet). The full_table
    threshold: `full_table_max_rows`, else the one the file records, else FULL_TABLE_MAX_ROWS."""
    old = _load(existing_text, path) if existing_text is not None else {}
    old_tables: dict[str, Any] = dict(old.get("tables") or {})
    old_meta: dict[str, Any] = dict(old.get("metadata") or {}) if isinstance(old.get("metadata"), dict) else {}
    recorded = old_meta.get("discover") if isinstance(old_meta.get("discover"), dict) else {}
    threshold = full_table_max_rows if full_table_max_rows is not None else recorded.get("full_table_max_rows")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        threshold = FULL_TABLE_MAX_ROWS
    excluded = {str(t) for t in (old_meta.get("exclude_tables") or [])}
    user_blocks = _entry_blocks(existing_text, path) if existing_text is not None else {}

    outcome = Outcome(text="", changed=False)
    entries: dict[str, str] = {}   # table -> its text block (two-space indented)
    for name in sorted(set(source.tables) | set(old_tables)):
        previous = old_tables.get(name)
        if name in old_tables and _owner(previous) == "yours":  # never rewritten, never dropped
            entries[name] = _your_block(name, previous, user_blocks.get(name))
            (outcome.kept_yours if name in source.tables else outcome.gone_kept).append(name)
            continue
        if name not in source.tables or name in excluded:
            if name in old_tables:
                outcome.removed.append(name)
            continue
        decision = decide(source.tables[name], full_table_max_rows=threshold)
        if isinstance(decision, Unconfigured):
            outcome.unconfigured[name] = decision.reason
            if name in old_tables:
                outcome.removed.append(name)
            continue
        entry = dict(decision.settings)
        entry["x_discover"] = {"fingerprint": fingerprint(entry), "why": decision.why}
        entries[name] = _dump_entry(name, entry)
        if decision.notes:
            outcome.notes[name] = list(decision.notes)
        if name not in old_tables:
            outcome.added.append(name)
        elif _strip_informational(previous) != _strip_informational(entry):
            outcome.updated.append(name)

    previous_discover = recorded
    discover_meta = {
        "rule_version": RULE_VERSION,
        "full_table_max_rows": threshold,
        "generated_at": None,  # filled below
        "source": {"database": source.database, "server_version": source.server_version,
                   "opendental_version": source.opendental_version},
        "unconfigured": dict(sorted(outcome.unconfigured.items())),
        "columns": {name: [str(c.name) for c in source.tables[name].columns]
                    for name in sorted(source.tables) if name not in excluded},
    }
    metadata = {k: v for k, v in old_meta.items() if k != "discover"}
    metadata.setdefault("exclude_tables", [])
    metadata["discover"] = discover_meta

    def text_with(stamp: str | None) -> str:
        discover_meta["generated_at"] = stamp
        return _document_text(metadata, entries)

    same = text_with(previous_discover.get("generated_at"))
    if existing_text is not None and same == existing_text:
        outcome.text, outcome.changed = same, False
        return outcome
    moment = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(microsecond=0)
    outcome.text, outcome.changed = text_with(moment.strftime("%Y-%m-%dT%H:%M:%SZ")), True
    # What the file now says must be what we meant: parses, validates, and keeps your entries' values.
    written = _load(outcome.text, path)
    parse_config(written, path)
    if existing_text is not None:
        outcome.diff = "".join(difflib.unified_diff(existing_text.splitlines(keepends=True),
                                                    outcome.text.splitlines(keepends=True),
                                                    fromfile=f"{path} (before)", tofile=f"{path} (discover)"))
    return outcome


def _your_block(name: str, entry: Any, block: str | None) -> str:
    """Your entry as you wrote it (comments included) when the cut-out text reads back to the same value,
    else written from its value."""
    if block is not None:
        try:
            if yaml.safe_load("tables:\n" + block)["tables"] == {name: entry}:
                return block
        except (yaml.YAMLError, TypeError, KeyError):
            pass
    return _dump_entry(name, entry if isinstance(entry, dict) else {})


def _strip_informational(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry
    return {k: v for k, v in entry.items() if k in SETTING_KEYS}


def _load(text: str, path: Path) -> dict[str, Any]:
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {getattr(exc, 'problem', None) or exc}") from None
    if document is None:
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("tables", {}), dict):
        raise ConfigError(f"{path}: expected a top-level 'tables:' mapping of table name to settings")
    return document


def _entry_blocks(text: str, path: Path) -> dict[str, str]:
    """Each table entry's own text (comments inside it included), re-indented to two spaces, so an entry
    that is yours is written back as you wrote it. An entry that cannot be cut out cleanly is left out
    (it is then written from its parsed value)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    tables = next((v for k, v in root.value if getattr(k, "value", None) == "tables"), None)
    if not isinstance(tables, yaml.MappingNode) or tables.flow_style:
        return {}
    lines = text.splitlines()
    pairs = tables.value
    blocks: dict[str, str] = {}
    for index, (key, value) in enumerate(pairs):
        start = key.start_mark.line
        end = pairs[index + 1][0].start_mark.line if index + 1 < len(pairs) else value.end_mark.line
        if index + 1 == len(pairs) and value.end_mark.column > 0:
            end += 1
        chunk = lines[start:end]
        while chunk and not chunk[-1].strip():
            chunk.pop()
        column = key.start_mark.column
        shifted = []
        for line in chunk:
            if line.strip() and len(line) - len(line.lstrip(" ")) < column and not line.lstrip().startswith("#"):
                shifted = []
                break
            shifted.append("  " + line[column:] if line.strip() else "")
        if shifted:
            blocks[str(key.value)] = "\n".join(shifted) + "\n"
    return blocks


def _scalar(value: Any) -> str:
    """One YAML scalar, quoted when YAML needs it (never folded over lines)."""
    text = yaml.safe_dump(value, width=1 << 20, allow_unicode=True).rstrip("\n")
    return text[: -len("\n...")] if text.endswith("\n...") else text


def _flow_list(values: Iterable[Any], column: int, width: int = 110) -> str:
    """A flow sequence starting at `column`, wrapped before `width`; continuation lines align after '['."""
    items = [_scalar(v) for v in values]
    lines: list[str] = []
    current = "["
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "]")
        start = column if not lines else 0
        if current.strip() not in ("[", "") and start + len(current) + 1 + len(piece) > width:
            lines.append(current)
            current = " " * (column + 1)
        current += piece if current.endswith("[") or not current.strip() else " " + piece
    if not items:
        current += "]"
    return "\n".join(lines + [current])


def _emit(mapping: Mapping[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    out = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            if value:
                out.append(f"{pad}{key}:")
                out.extend(_emit(value, indent + 2))
            else:
                out.append(f"{pad}{key}: {{}}")
        elif isinstance(value, (list, tuple)):
            out.append(f"{pad}{key}: {_flow_list(value, indent + len(str(key)) + 2)}")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}")
    return out


def _dump_entry(name: str, entry: Mapping[str, Any]) -> str:
    return "\n".join([f"  {name}:", *_emit(entry, 4)]) + "\n"


def _document_text(metadata: Mapping[str, Any], entries: Mapping[str, str]) -> str:
    lines = [HEADER.format(rule_version=RULE_VERSION).rstrip("\n"), "metadata:", *_emit(metadata, 2), "tables:"]
    return "\n".join(lines) + "\n" + "".join(entries[name] for name in sorted(entries))


def write_atomically(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent or Path(".")))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- --check

@dataclass
class Coverage:
    new_tables: list[str] = field(default_factory=list)
    new_columns: dict[str, list[str]] = field(default_factory=dict)
    gone_tables: list[str] = field(default_factory=list)
    gone_columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def covered(self) -> bool:
        return not self.new_tables and not self.new_columns


def coverage(source: Source, text: str, path: Path) -> Coverage:
    """What the source has that the file does not cover (and, for information, what it no longer has).

    A table is covered when it is configured, excluded (metadata.exclude_tables) or was found
    unconfigurable by the last discover (metadata.discover.unconfigured); its columns are covered when
    metadata.discover.columns lists them (a table without such a record -- written by hand -- counts as
    covered column-wise)."""
    document = _load(text, path)
    parse_config(document, path)
    tables = document.get("tables") or {}
    meta = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    recorded = meta.get("discover") if isinstance(meta.get("discover"), dict) else {}
    known = set(tables) | {str(t) for t in meta.get("exclude_tables") or []} | set(recorded.get("unconfigured") or {})
    columns = recorded.get("columns") if isinstance(recorded.get("columns"), dict) else {}
    result = Coverage()
    for name, table in sorted(source.tables.items()):
        if name not in known:
            result.new_tables.append(name)
            continue
        if name in columns:
            before = [str(c) for c in columns[name] or []]
            now = [str(c.name) for c in table.columns]
            added = [c for c in now if c not in before]
            dropped = [c for c in before if c not in now]
            if added:
                result.new_columns[name] = added
            if dropped:
                result.gone_columns[name] = dropped
    result.gone_tables = sorted(t for t in tables if t not in source.tables)
    return result


# ---------------------------------------------------------------- the command

def run(settings: Settings, *, check: bool = False, output: Path | None = None, show_diff: bool = True,
        full_table_max_rows: int | None = None, echo=print) -> int:
    """`etl discover [--check] [--output PATH]`; returns the exit code."""
    path = Path(output) if output is not None else Path(settings.tables_path)
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    source = read_source(settings)
    if check:
        if existing is None:
            echo(f"{path}: no such file: every one of the {len(source.tables)} tables of the source is uncovered "
                 "(run `etl discover`)")
            return 1
        result = coverage(source, existing, path)
        for name in result.new_tables:
            echo(f"{path}: table {name!r} of the source is not covered (new at the source?)")
        for name, added in result.new_columns.items():
            echo(f"{path}: table {name!r}: column(s) {', '.join(added)} of the source are not covered")
        for name in result.gone_tables:
            echo(f"{path}: table {name!r} is configured but no longer exists at the source")
        for name, dropped in result.gone_columns.items():
            echo(f"{path}: table {name!r}: column(s) {', '.join(dropped)} no longer exist at the source")
        if result.covered:
            echo(f"{path} covers every table and column of {source.database} ({len(source.tables)} tables)")
            return 0
        echo("run `etl discover` to update it (your entries are kept)")
        return 1

    outcome = merge(source, existing, path=path, full_table_max_rows=full_table_max_rows)
    if outcome.changed:
        write_atomically(path, outcome.text)
    configured = len(_load(outcome.text, path).get("tables") or {})
    for label, names in (("added", outcome.added), ("updated", outcome.updated),
                         ("kept (yours)", outcome.kept_yours), ("removed (gone from the source or excluded)",
                                                                 outcome.removed),
                         ("gone from the source but kept (yours: remove it)", outcome.gone_kept)):
        if names:
            echo(f"{label}: {', '.join(names)}")
    for name, reason in outcome.unconfigured.items():
        echo(f"not configured: {name}: {reason}")
    for name, notes in outcome.notes.items():
        for note in notes:
            echo(f"note: {name}: {note}")
    if outcome.diff and show_diff:
        echo(outcome.diff.rstrip("\n"))
    state = "wrote" if outcome.changed else "unchanged:"
    echo(f"{state} {path}: {configured} tables configured, {len(outcome.unconfigured)} not configured, "
         f"source {source.database} ({source.server_version}"
         + (f", OpenDental {source.opendental_version})" if source.opendental_version else ")"))
    if outcome.changed:
        echo("next: `etl dbt-sources` (dbt sources and staging models), then `etl check-config` and `etl run`")
    return 0
