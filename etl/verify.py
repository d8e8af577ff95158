"""`etl verify` and `etl reconcile`: chunked comparison of source, replica and raw by primary-key ranges.

`etl verify` then compares the keys of the dbt models built on each table (the staging layer) with raw's,
in the database (verify_model_keys): keys raw held when the model last ran that it lacks (missing), keys it
holds that raw no longer does and whose delete is not still waiting for the next transform (extra).

Each side computes, per key bucket, a row count and an order-independent checksum of the rows'
canonical text (sql_templates/_macros/canonical.sql.j2) inside its own database; only buckets that
differ are cut finer, and only buckets of at most LEAF_SPAN keys are listed row by row (key and hash).
When nothing differs no row leaves a server, and memory stays bounded whatever the table size.

The key range is walked in chunks, one statement per side each, whose width (in keys) follows the time the
last chunk took towards ETL_CHUNK_SECONDS (etl/blocks.resize): the source is a live MyISAM database whose
writers wait while a statement reads their table. A chunk that differs is cut finer inside its own range,
so no statement reads more than one chunk.

Supported: tables whose primary key is one integer column (every OpenDental table); others are reported
as skipped. Reconcile deletes what the comparison finds gone upstream; the runner (etl/runner.py) holds the
locks around each half and etl/tracking.py records it in both run histories.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from etl import tracking
from etl.blocks import TARGET_SECONDS, resize
from etl.config import EtlConfig, TableConfig
from etl.db import execute, fetch_all, fetch_one
from etl.dialects import for_url, mysql, postgres
from etl.errors import PhaseError
from etl.render import Ident
from etl.schema import INTEGER_TYPES, Column
from etl.settings import Settings

log = logging.getLogger("etl.verify")

FIRST_SPAN = 4096       # keys of the first chunk of a table's key range (then sized by time)
SPLIT = 32              # a differing chunk or bucket is cut into this many
LEAF_SPAN = 2048        # buckets this narrow are compared row by row
EXAMPLES = 10           # keys named per kind of difference
DELETE_BATCH = 1000


@dataclass
class Side:
    """One table on one server, as the comparison sees it."""

    name: str
    conn: Any
    dialect: ModuleType
    where: dict[str, Ident]   # the table's database (MySQL: {"database": ...}) or schema ({"schema": ...})
    table: Ident

    def render(self, statement: str, **context: Any):
        return self.dialect.render(statement, table=self.table, **self.where, **context)

    def key_range(self, key: Ident) -> tuple[int | None, int | None, int]:
        lo, hi, count = fetch_one(self.conn, self.render("verify_key_range", key=key))
        return _int(lo), _int(hi), int(count)

    def buckets(self, key: Ident, columns: tuple[Column, ...], lo: int, hi: int, span: int) -> dict[int, tuple]:
        rows = fetch_all(self.conn, self.render("verify_buckets", key=key, columns=_canonical(columns)),
                         {"lo": lo, "hi": hi, "span": span})
        return {int(b): (int(n), int(s)) for b, n, s in rows}

    def rows(self, key: Ident, columns: tuple[Column, ...], lo: int, hi: int) -> dict[int, int]:
        rows = fetch_all(self.conn, self.render("verify_rows", key=key, columns=_canonical(columns)),
                         {"lo": lo, "hi": hi})
        null = next((k for k, h in rows if h is None), None)
        if null is not None:  # a string built on the server came back NULL: too long, not equal to anything
            raise PhaseError(f"verify {self.table}: the row hash of key {null} came back NULL on the {self.name} "
                             "(a value longer than max_allowed_packet there); raise it to compare this row")
        return {int(k): int(h) for k, h in rows}

    def delete(self, key: Ident, keys: list[int], raw_schema: str) -> int:
        """Delete these keys, DELETE_BATCH at a time, in the connection's transaction; rows deleted."""
        count = 0
        statement = self.dialect.render("reconcile_delete", table=self.table, key=key, **self.dialect.scope(raw_schema))
        with self.conn.cursor() as cur:
            for i in range(0, len(keys), DELETE_BATCH):
                execute(cur, statement, {"keys": self.dialect.key_list(keys[i:i + DELETE_BATCH])})
                count += max(cur.rowcount, 0)
        return count


def _canonical(columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """Columns as the canonical text reads them: it follows the load's rules (postgres.copy_kind)."""
    return postgres.map_columns(columns)


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


def compare(up: Side, down: Side, key: Ident, columns: tuple[Column, ...], diff: Diff,
            seconds: float = TARGET_SECONDS) -> None:
    """Fill `diff` with the differences between two sides of one table: chunk by chunk over the key range,
    each chunk's width following how long the slower side took for the last one (`seconds` the aim)."""
    ranges = [r for r in (up.key_range(key), down.key_range(key)) if r[0] is not None]
    if not ranges:
        return
    lo = min(r[0] for r in ranges)
    hi = max(r[1] for r in ranges) + 1
    width = FIRST_SPAN
    while lo < hi:
        end = min(lo + width, hi)
        started = time.monotonic()
        a = up.buckets(key, columns, lo, end, end - lo)
        took = time.monotonic() - started
        started = time.monotonic()
        b = down.buckets(key, columns, lo, end, end - lo)
        took = max(took, time.monotonic() - started)
        if a != b:
            _differing(up, down, key, columns, lo, end, end - lo, diff)
        lo, width = end, resize(width, took, seconds)


def _compare_range(up: Side, down: Side, key: Ident, columns, lo: int, hi: int, span: int, diff: Diff) -> None:
    a = up.buckets(key, columns, lo, hi, span)
    b = down.buckets(key, columns, lo, hi, span)
    for bucket in sorted(set(a) | set(b)):
        if a.get(bucket) == b.get(bucket):
            continue
        blo = lo + bucket * span
        _differing(up, down, key, columns, blo, min(blo + span, hi), span, diff)


def _differing(up: Side, down: Side, key: Ident, columns, lo: int, hi: int, span: int, diff: Diff) -> None:
    """A bucket [lo, hi) of `span` keys that differs: listed row by row when narrow, else cut finer."""
    if span <= LEAF_SPAN:
        ra, rb = up.rows(key, columns, lo, hi), down.rows(key, columns, lo, hi)
        diff.add("missing", [k for k in ra if k not in rb])
        diff.add("extra", [k for k in rb if k not in ra])
        diff.add("different", [k for k in ra if k in rb and ra[k] != rb[k]])
    else:
        _compare_range(up, down, key, columns, lo, hi, max(LEAF_SPAN, -(-span // SPLIT)), diff)


def _integer_key(config: TableConfig, columns: dict[str, Column]) -> Ident | None:
    if len(config.primary_key) != 1 or config.primary_key[0] not in columns:
        return None
    column = columns[config.primary_key[0]]
    return column.name if column.data_type in INTEGER_TYPES else None


class _Connections:
    def __init__(self, settings: Settings):
        self.source = mysql.connect(settings.source_url, role="source", raw_text=True)
        self.replica = mysql.connect(settings.replica_url, role="replica", raw_text=True)
        self.raw = for_url(settings.analytics_url).connect(settings.analytics_url)
        self.raw.autocommit = True
        for conn in (self.source, self.replica):
            conn.autocommit(True)

    def close(self) -> None:
        for conn in (self.source, self.replica, self.raw):
            conn.close()


def _sides(settings: Settings, conns: _Connections, table: str) -> tuple[Side, Side, Side]:
    return (Side("source", conns.source, mysql, {"database": Ident(settings.source_url.database)}, Ident(table)),
            Side("replica", conns.replica, mysql, {"database": Ident(settings.replica_url.database)}, Ident(table)),
            Side("raw", conns.raw, for_url(settings.analytics_url), {"schema": Ident(settings.raw_schema)},
                 Ident(table)))


def verify_table(settings: Settings, conns: _Connections, config: TableConfig) -> dict[str, Any]:
    source_schema = mysql.reflect_table(conns.source, settings.source_url.database, config.name)
    replica_schema = mysql.reflect_table(conns.replica, settings.replica_url.database, config.name)
    raw_columns = for_url(settings.analytics_url).reflect_columns(conns.raw, settings.raw_schema, config.name)
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
        compare(up, down, key, columns_, diff, settings.chunk_seconds)
        pairs[name] = {"missing": diff.missing, "extra": diff.extra, "different": diff.different,
                       "examples": diff.examples}
    result["pairs"] = pairs
    result["differing_rows"] = sum(p["missing"] + p["extra"] + p["different"] for p in pairs.values())
    result["status"] = "ok" if result["differing_rows"] == 0 else "drift"
    return result


def _rejected(settings: Settings, replica: Any, result: dict[str, Any]) -> None:
    """Rows the copy rejected (etl_copy_rejects) are drift of their table, even where an older value of them
    still matches: a line each in the result (the copy retries them every run)."""
    table = result["table"]
    rejected = [tracking.describe_reject(table, row)
                for row in tracking.store(settings, "replica").rejects(table).rows(replica)]
    if rejected:
        result["rejected"] = rejected
        result["differing_rows"] = (result.get("differing_rows") or 0) + len(rejected)
        result["status"] = "drift"


def verify(settings: Settings, config: EtlConfig, tables: list[str] | None = None) -> dict[str, Any]:
    """Compare every selected table, then the keys of the dbt models built on it; changes nothing.
    Configured columns are checked against the source first (exit 2)."""
    from etl.check import check_columns
    from etl.status import status_report

    selected = config.select(tables)
    check_columns(settings, config, selected)
    conns = _Connections(settings)
    try:
        results = []
        for table in selected:
            log.info("verifying %s", table.name)
            results.append(verify_table(settings, conns, table))
            _rejected(settings, conns.replica, results[-1])
        staging, staging_error = verify_staging(settings, conns.raw, config, selected)
    finally:
        conns.close()
    for result in results:
        models = staging.get(result["table"], [])
        result["staging"] = models
        drift = sum(m["missing"] + m["extra"] for m in models)
        if drift:
            result["differing_rows"] = (result.get("differing_rows") or 0) + drift
            result["status"] = "drift"
    coverage = status_report(settings, config)["coverage"]
    return {
        "tables": results,
        "coverage": coverage,
        "differing_rows": sum(r.get("differing_rows") or 0 for r in results),
        "staging_error": staging_error,
        "ok": all(r["status"] in ("ok", "skipped") for r in results) and staging_error is None,
    }


#: How `etl verify` says the staging layer was not checked because dbt is not installed (no transform).
NO_DBT = "not checked: dbt is not installed (pip install -e '.[dbt]')"


def verify_staging(settings: Settings, conn: Any, config: EtlConfig,
                   selected: list[TableConfig]) -> tuple[dict[str, list[dict]], str | None]:
    """The keys of every dbt model that mirrors a selected table (etl/phases/transform.py keyed_models)
    against raw's, up to the last run the transform took: table -> one result per model, and why the
    layer could not be checked (None when it was, or when dbt is not installed: there is no layer)."""
    from etl.errors import ConfigError
    from etl.phases import transform

    try:
        manifest, error = transform.parsed_project(settings)
    except ConfigError as exc:
        if "needs dbt" in str(exc):
            log.info("staging %s", NO_DBT)
            return {}, None
        return {}, str(exc)
    if manifest is None:
        return {}, error
    target = for_url(settings.analytics_url)
    store = tracking.store(settings, "analytics")
    # every configured table: whether a model reads only one of them does not depend on the selection
    keyed = transform.keyed_models(manifest, settings.raw_schema,
                                   {name: t.primary_key for name, t in config.tables.items()})
    out: dict[str, list[dict]] = {}
    for table in selected:
        for model in keyed.get(table.name, []):
            out.setdefault(table.name, []).append(_verify_model(conn, target, store, settings.raw_schema, model))
    return out, None


def _is_integer(pg_type: str) -> bool:
    return pg_type in ("smallint", "integer", "bigint") or pg_type.startswith("numeric")


def _verify_model(conn: Any, target: ModuleType, store: tracking.Store, raw_schema: str, model) -> dict[str, Any]:
    result: dict[str, Any] = {"model": model.name, "relation": f"{model.schema}.{model.relation}",
                              "missing": 0, "extra": 0, "examples": {"missing": [], "extra": []}}
    raw_columns = target.reflect_columns(conn, raw_schema, model.table)
    model_columns = target.reflect_columns(conn, model.schema, model.relation)
    recorded = store.transform_recorded(conn, model.table)
    through = recorded[4] if recorded else None
    if not model_columns or through is None:
        result["status"] = "not built yet" if not model_columns else "not transformed yet"
        return result
    if model.raw_key not in raw_columns or model.model_key not in model_columns:
        result["status"] = "skipped"
        result["error"] = (f"key column {model.raw_key} (raw.{model.table}) or {model.model_key} "
                           f"({result['relation']}) does not exist")
        return result
    if not all(_is_integer(t) for t in (raw_columns[model.raw_key], model_columns[model.model_key])):
        result["status"] = "skipped"
        result["error"] = "the key comparison needs an integer key"
        return result
    statement = target.render("verify_model_keys", table=Ident(model.table), key=Ident(model.raw_key),
                              model_schema=Ident(model.schema), model=Ident(model.relation),
                              model_key=Ident(model.model_key), **target.scope(raw_schema))
    for kind, count, keys in fetch_all(conn, statement, {"through": through, "table_name": model.table,
                                                         "examples": EXAMPLES}):
        result[kind] = int(count)
        result["examples"][kind] = [int(k) if k is not None else None for k in keys or []]
    result["status"] = "ok" if result["missing"] + result["extra"] == 0 else "drift"
    result["through"] = through
    return result


def format_verify(report: dict[str, Any]) -> str:
    lines = [f"{'table':<16} {'status':<8} {'source':>10} {'replica':>10} {'raw':>10}  differences"]
    for r in report["tables"]:
        rows = r.get("rows") or {}
        detail = r.get("error") or "; ".join(
            f"{name}: {p['missing']} missing, {p['extra']} extra, {p['different']} different"
            + (f" (e.g. {', '.join(f'{k} {v[:5]}' for k, v in p['examples'].items() if v)})" if p["missing"] + p["extra"] + p["different"] else "")
            for name, p in r.get("pairs", {}).items() if p["missing"] + p["extra"] + p["different"])
        if r.get("rejected"):
            rejected = f"{len(r['rejected'])} rejected by the copy: {r['rejected'][0]}"
            detail = "; ".join(x for x in (detail, rejected) if x)
        detail = detail or "-"
        lines.append(f"{r['table']:<16} {r['status']:<8} {rows.get('source', '-'):>10} {rows.get('replica', '-'):>10} "
                     f"{rows.get('raw', '-'):>10}  {detail}")
        for m in r.get("staging", []):
            found = "; ".join(f"{m[k]} {k} (e.g. {m['examples'][k][:5]})" for k in ("missing", "extra") if m[k])
            lines.append(f"  {m['relation']:<30} {m['status']:<8} keys vs raw: "
                         f"{found or m.get('error') or ('-' if m['status'] == 'ok' else m['status'])}")
    cov = report["coverage"]
    lines.append(f"tables with a primary incremental column that have a recorded watermark: "
                 f"{cov['with_watermark']} of {cov['with_primary_column']}")
    if report.get("staging_error"):
        lines.append(f"staging models not checked: {report['staging_error']}")
    lines.append(f"rows that differ: {report['differing_rows']}")
    return "\n".join(lines)


class Reconciliation:
    """`etl reconcile` of one table, in two halves the runner runs under the copy and the load lock: the
    replica loses the keys gone from the source, then raw the keys gone from the replica. Each half is
    recorded in its database's run history (phase reconcile)."""

    def __init__(self, settings: Settings, config: TableConfig, run_id: str):
        self.settings, self.config, self.run_id = settings, config, run_id
        self.deleted = {"replica": 0, "raw": 0}
        self.conns = _Connections(settings)
        try:
            self.schema = mysql.reflect_table(self.conns.replica, settings.replica_url.database, config.name)
            self.key = None
            if self.schema is not None:
                self.key = _integer_key(config, {c.name: c for c in self.schema.columns})
                if self.key is None:
                    raise ValueError(f"table {config.name!r}: reconcile needs a single integer primary key")
        except BaseException:
            self.conns.close()
            raise
        self.source, self.replica_side, self.raw_side = _sides(settings, self.conns, config.name)
        self.started = tracking.utc_now()

    def __enter__(self) -> "Reconciliation":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.conns.close()

    @property
    def possible(self) -> bool:
        """False when the replica does not have the table yet (nothing to reconcile)."""
        return self.schema is not None

    def _keys_gone(self, up: Side, down: Side) -> list[int]:
        diff = Diff(extra_keys=[])
        compare(up, down, self.key, (self.schema.column(self.key),), diff, self.settings.chunk_seconds)
        return diff.extra_keys

    def replica(self) -> None:
        """Under the copy lock. The replica connection autocommits: each batch of deletes on its own."""
        try:
            gone = self._keys_gone(self.source, self.replica_side)
            self.deleted["replica"] = self.replica_side.delete(self.key, gone, self.settings.raw_schema)
        except Exception as exc:
            self._record_failure("replica", self.conns.replica, exc)
            raise
        tracking.store(self.settings, "replica").write_history(self.conns.replica, self._history("replica"))

    def raw_exists(self) -> bool:
        return bool(self.raw_side.dialect.reflect_columns(self.conns.raw, self.settings.raw_schema, self.config.name))

    def raw(self) -> None:
        """Under the load lock, in one transaction with its run-history row."""
        try:
            gone = self._keys_gone(self.replica_side, self.raw_side)
            self.conns.raw.autocommit = False
            store = tracking.store(self.settings, "analytics")
            # The run's history id, taken before the delete: the keys are recorded under it, so the transform
            # (whose window of ids reaches it) deletes them from the models built on the table too.
            history_id = store.next_history_id(self.conns.raw)
            self.deleted["raw"] = self.raw_side.delete(self.key, gone, self.settings.raw_schema)
            store.record_deletes(self.conns.raw, self.config.name, str(self.key), gone, load_id=history_id,
                                 source="reconcile")
        except Exception as exc:
            self._record_failure("analytics", self.conns.raw, exc)
            raise
        store.write_history(self.conns.raw, self._history("raw", history_id))
        self.conns.raw.commit()

    def _record_failure(self, side: str, conn: Any, exc: Exception) -> None:
        """A failed half is in its database's run history too (best effort: the connection may be what failed)."""
        from etl.errors import EtlError, mask_secrets

        error = mask_secrets(str(exc) if isinstance(exc, EtlError) else f"{type(exc).__name__}: {exc}")
        try:
            conn.rollback()
            tracking.store(self.settings, side).write_history(conn, tracking.History(
                run_id=self.run_id, phase="reconcile", table=self.config.name, started_at=self.started,
                status="failed", strategy="keys", error=error))
            conn.commit()
        except Exception:
            log.warning("reconcile %s: the failure could not be recorded", self.config.name, exc_info=True)

    def _history(self, side: str, history_id: int | None = None) -> tracking.History:
        deleted = self.deleted[side]
        return tracking.History(run_id=self.run_id, phase="reconcile", table=self.config.name,
                                started_at=self.started, status="success", strategy="keys", rows_written=deleted,
                                notes=f"{deleted} rows deleted (keys gone upstream)", id=history_id)
