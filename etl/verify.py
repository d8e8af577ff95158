"""`etl verify` and `etl reconcile`: chunked comparison of source, replica and raw by primary-key ranges.

Each side computes, per key bucket, a row count and an order-independent checksum of the rows'
canonical text (sql_templates/_macros/canonical.sql.j2) inside its own database; only buckets that
differ are cut finer, and only buckets of at most LEAF_SPAN keys are listed row by row (key and hash).
When nothing differs no row leaves a server, and memory stays bounded whatever the table size.

Supported: tables whose primary key is one integer column (every OpenDental table); others are reported
as skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from etl.config import EtlConfig, TableConfig
from etl.db import execute, fetch_all, fetch_one, mysql_connect, pg_connect
from etl.execute import RAW_TEXT_CONV
from etl.locks import table_lock
from etl.render import Ident, render
from etl.schema import INTEGER_TYPES, Column, reflect_mysql_table, reflect_pg_columns
from etl.settings import Settings

log = logging.getLogger("etl.verify")

FIRST_BUCKETS = 256     # buckets of the first pass over a table's key range
SPLIT = 32              # a differing bucket is cut into this many
LEAF_SPAN = 2048        # buckets this narrow are compared row by row
EXAMPLES = 10           # keys named per kind of difference
DELETE_BATCH = 1000


@dataclass
class Side:
    """One table on one server, as the comparison sees it."""

    name: str
    conn: Any
    dialect: str
    container: Ident          # database (MySQL) or schema (PostgreSQL)
    table: Ident

    def _ctx(self) -> dict[str, Any]:
        where = "database" if self.dialect == "mysql" else "schema"
        return {where: self.container, "table": self.table}

    def key_range(self, key: Ident) -> tuple[int | None, int | None, int]:
        lo, hi, count = fetch_one(self.conn, render(f"{self.dialect}/verify_key_range", key=key, **self._ctx()))
        return _int(lo), _int(hi), int(count)

    def buckets(self, key: Ident, columns: tuple[Column, ...], lo: int, hi: int, span: int) -> dict[int, tuple]:
        rows = fetch_all(self.conn, render(f"{self.dialect}/verify_buckets", key=key, columns=columns, **self._ctx()),
                         {"lo": lo, "hi": hi, "span": span})
        return {int(b): (int(n), int(s)) for b, n, s in rows}

    def rows(self, key: Ident, columns: tuple[Column, ...], lo: int, hi: int) -> dict[int, int]:
        rows = fetch_all(self.conn, render(f"{self.dialect}/verify_rows", key=key, columns=columns, **self._ctx()),
                         {"lo": lo, "hi": hi})
        return {int(k): int(h) for k, h in rows}


@dataclass
class Diff:
    """Keys upstream but not downstream (missing), downstream only (extra), in both but different."""

    missing: int = 0
    extra: int = 0
    different: int = 0
    examples: dict[str, list[int]] = field(default_factory=lambda: {"missing": [], "extra": [], "different": []})
    extra_keys: list[int] | None = None   # all of them, when the caller will delete them

    @property
    def total(self) -> int:
        return self.missing + self.extra + self.different

    def add(self, kind: str, keys: list[int]) -> None:
        setattr(self, kind, getattr(self, kind) + len(keys))
        room = EXAMPLES - len(self.examples[kind])
        self.examples[kind].extend(sorted(keys)[:max(room, 0)])
        if kind == "extra" and self.extra_keys is not None:
            self.extra_keys.extend(keys)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return int(value)


def compare(up: Side, down: Side, key: Ident, columns: tuple[Column, ...], diff: Diff) -> None:
    """Fill `diff` with the differences between two sides of one table."""
    ranges = [r for r in (up.key_range(key), down.key_range(key)) if r[0] is not None]
    if not ranges:
        return
    lo = min(r[0] for r in ranges)
    hi = max(r[1] for r in ranges) + 1
    span = max(LEAF_SPAN, -(-(hi - lo) // FIRST_BUCKETS))
    _compare_range(up, down, key, columns, lo, hi, span, diff)


def _compare_range(up: Side, down: Side, key: Ident, columns, lo: int, hi: int, span: int, diff: Diff) -> None:
    a = up.buckets(key, columns, lo, hi, span)
    b = down.buckets(key, columns, lo, hi, span)
    for bucket in sorted(set(a) | set(b)):
        if a.get(bucket) == b.get(bucket):
            continue
        blo = lo + bucket * span
        bhi = min(blo + span, hi)
        if span <= LEAF_SPAN:
            ra, rb = up.rows(key, columns, blo, bhi), down.rows(key, columns, blo, bhi)
            diff.add("missing", [k for k in ra if k not in rb])
            diff.add("extra", [k for k in rb if k not in ra])
            diff.add("different", [k for k in ra if k in rb and ra[k] != rb[k]])
        else:
            _compare_range(up, down, key, columns, blo, bhi, max(LEAF_SPAN, -(-span // SPLIT)), diff)


def _integer_key(config: TableConfig, columns: dict[str, Column]) -> Ident | None:
    if len(config.primary_key) != 1 or config.primary_key[0] not in columns:
        return None
    column = columns[config.primary_key[0]]
    return column.name if column.data_type in INTEGER_TYPES else None


class _Connections:
    def __init__(self, settings: Settings):
        self.source = mysql_connect(settings.source_url, role="source", conv=RAW_TEXT_CONV)
        self.replica = mysql_connect(settings.replica_url, role="replica", conv=RAW_TEXT_CONV)
        self.raw = pg_connect(settings.analytics_url)
        self.raw.autocommit = True
        for conn in (self.source, self.replica):
            conn.autocommit(True)

    def close(self) -> None:
        for conn in (self.source, self.replica, self.raw):
            conn.close()


def _sides(settings: Settings, conns: _Connections, table: str) -> tuple[Side, Side, Side]:
    return (Side("source", conns.source, "mysql", Ident(settings.source_url.database), Ident(table)),
            Side("replica", conns.replica, "mysql", Ident(settings.replica_url.database), Ident(table)),
            Side("raw", conns.raw, "postgres", Ident(settings.raw_schema), Ident(table)))


def verify_table(settings: Settings, conns: _Connections, config: TableConfig) -> dict[str, Any]:
    source_schema = reflect_mysql_table(conns.source, settings.source_url.database, config.name)
    replica_schema = reflect_mysql_table(conns.replica, settings.replica_url.database, config.name)
    raw_columns = reflect_pg_columns(conns.raw, settings.raw_schema, config.name)
    result: dict[str, Any] = {"table": config.name}
    missing = [n for n, s in (("source", source_schema), ("replica", replica_schema), ("raw", raw_columns)) if not s]
    if missing:
        result.update(status="drift", error=f"table missing in: {', '.join(missing)}", differing_rows=None)
        return result
    columns = {c.name: c for c in source_schema.columns}
    key = _integer_key(config, columns)
    if key is None:
        result.update(status="skipped", error="verify needs a single integer primary key", differing_rows=None)
        return result
    shared_replica = tuple(c for c in source_schema.columns if replica_schema.has_column(c.name))
    shared_raw = tuple(c for c in replica_schema.columns if c.name in raw_columns)
    source, replica, raw = _sides(settings, conns, config.name)
    result["rows"] = {side.name: side.key_range(key)[2] for side in (source, replica, raw)}
    pairs = {}
    for name, up, down, columns_ in (("source->replica", source, replica, shared_replica),
                                     ("replica->raw", replica, raw, shared_raw)):
        diff = Diff()
        compare(up, down, key, columns_, diff)
        pairs[name] = {"missing": diff.missing, "extra": diff.extra, "different": diff.different,
                       "examples": diff.examples}
    result["pairs"] = pairs
    result["differing_rows"] = sum(p["missing"] + p["extra"] + p["different"] for p in pairs.values())
    result["status"] = "ok" if result["differing_rows"] == 0 else "drift"
    return result


def verify(settings: Settings, config: EtlConfig, tables: list[str] | None = None) -> dict[str, Any]:
    """Compare every selected table; changes nothing."""
    from etl.status import status_report

    selected = config.select(tables)
    conns = _Connections(settings)
    try:
        results = []
        for table in selected:
            log.info("verifying %s", table.name)
            results.append(verify_table(settings, conns, table))
    finally:
        conns.close()
    coverage = status_report(settings, config)["coverage"]
    return {
        "tables": results,
        "coverage": coverage,
        "differing_rows": sum(r.get("differing_rows") or 0 for r in results),
        "ok": all(r["status"] in ("ok", "skipped") for r in results),
    }


def format_verify(report: dict[str, Any]) -> str:
    lines = [f"{'table':<16} {'status':<8} {'source':>10} {'replica':>10} {'raw':>10}  differences"]
    for r in report["tables"]:
        rows = r.get("rows") or {}
        detail = r.get("error") or "; ".join(
            f"{name}: {p['missing']} missing, {p['extra']} extra, {p['different']} different"
            + (f" (e.g. {', '.join(f'{k} {v[:5]}' for k, v in p['examples'].items() if v)})" if p["missing"] + p["extra"] + p["different"] else "")
            for name, p in r.get("pairs", {}).items() if p["missing"] + p["extra"] + p["different"]) or "-"
        lines.append(f"{r['table']:<16} {r['status']:<8} {rows.get('source', '-'):>10} {rows.get('replica', '-'):>10} "
                     f"{rows.get('raw', '-'):>10}  {detail}")
    cov = report["coverage"]
    lines.append(f"tables with a primary incremental column that have a recorded watermark: "
                 f"{cov['with_watermark']} of {cov['with_primary_column']}")
    lines.append(f"rows that differ: {report['differing_rows']}")
    return "\n".join(lines)


def reconcile_table(settings: Settings, config: TableConfig, run_id: str) -> dict[str, int]:
    """Delete from the replica, then from raw, the rows whose keys no longer exist upstream."""
    conns = _Connections(settings)
    deleted = {"replica": 0, "raw": 0}
    try:
        schema = reflect_mysql_table(conns.replica, settings.replica_url.database, config.name)
        if schema is None:
            return deleted
        key = _integer_key(config, {c.name: c for c in schema.columns})
        if key is None:
            raise ValueError(f"table {config.name!r}: reconcile needs a single integer primary key")
        key_only = (schema.column(key),)
        source, replica, raw = _sides(settings, conns, config.name)
        started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with table_lock(settings, "copy", config.name):
            diff = Diff(extra_keys=[])
            compare(source, replica, key, key_only, diff)
            deleted["replica"] = _delete(conns.replica, "mysql", {}, schema.name, key, diff.extra_keys)
            _history(conns.replica, "mysql", {}, run_id, config.name, deleted["replica"], started)
        if reflect_pg_columns(conns.raw, settings.raw_schema, config.name):
            with table_lock(settings, "load", config.name):
                diff = Diff(extra_keys=[])
                compare(replica, raw, key, key_only, diff)
                conns.raw.autocommit = False
                ctx = {"schema": Ident(settings.raw_schema)}
                deleted["raw"] = _delete(conns.raw, "postgres", ctx, schema.name, key, diff.extra_keys)
                _history(conns.raw, "postgres", ctx, run_id, config.name, deleted["raw"], started)
                conns.raw.commit()
    finally:
        conns.close()
    return deleted


def _delete(conn, dialect: str, ctx: dict, table: Ident, key: Ident, keys: list[int]) -> int:
    count = 0
    statement = render(f"{dialect}/reconcile_delete", table=table, key=key, **ctx)
    with conn.cursor() as cur:
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i:i + DELETE_BATCH]
            execute(cur, statement, {"keys": tuple(batch) if dialect == "mysql" else list(batch)})
            count += max(cur.rowcount, 0)
    return count


def _history(conn, dialect: str, ctx: dict, run_id: str, table: str, deleted: int, started: dt.datetime) -> None:
    params = {"run_id": run_id, "phase": "reconcile", "table_name": table, "strategy": "keys", "status": "success",
              "primary_column_name": None, "watermark_before": None, "watermark_after": None, "rows_read": 0,
              "rows_written": deleted, "values_adjusted": 0, "notes": f"{deleted} rows deleted (keys gone upstream)",
              "error": None, "started_at": started}
    if dialect == "postgres":
        params["id"] = fetch_one(conn, render("postgres/next_run_id"),
                                 {"history_table": f"{ctx['schema']}.etl_run_history"})[0]
    with conn.cursor() as cur:
        execute(cur, render(f"{dialect}/run_history_insert", **ctx), params)


def reconcile(settings: Settings, config: EtlConfig, tables: list[str] | None = None) -> dict[str, dict[str, int]]:
    run_id = str(uuid.uuid4())
    return {t.name: reconcile_table(settings, t, run_id) for t in config.select(tables)}
