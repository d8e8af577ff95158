"""`etl init-tracking` and `etl status`: the tracking rows of all three phases (through etl/tracking.py)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from etl import tracking
from etl.config import EtlConfig
from etl.dialects import for_url, mysql
from etl.errors import ConfigError, first_line
from etl.settings import Settings

PHASES = ("copy", "load", "transform")


def _connect(settings: Settings, *, analytics_optional: bool = False) -> dict[str, Any]:
    """A connection to the replica and to the analytics database, by tracking side. analytics_optional:
    an analytics database that cannot be reached is left out (etl status while PostgreSQL is down)."""
    from etl.errors import ConnectionFailed
    from etl.versions import require

    require(settings, ("replica",))
    replica = mysql.connect(settings.replica_url, role="replica")
    try:
        require(settings, ("analytics",))
        return {"replica": replica, "analytics": for_url(settings.analytics_url).connect(settings.analytics_url)}
    except ConnectionFailed as exc:
        if not analytics_optional:
            replica.close()
            raise
        _unreachable.append(str(exc))
        return {"replica": replica}
    except BaseException:
        replica.close()
        raise


#: Why a side was left out of the last report (etl status while a database is down).
_unreachable: list[str] = []


def init_tracking(settings: Settings, config: EtlConfig) -> dict[str, Any]:
    """A pending row per configured table in each tracking table; existing rows are left alone."""
    conns = _connect(settings)
    try:
        created = {}
        for phase in PHASES:
            side = tracking.PHASE_SIDE[phase]
            created[phase] = tracking.store(settings, side).init_rows(conns[side], phase, config.tables.values())
        for conn in conns.values():
            conn.commit()
        rows = _all_rows(settings, conns)
    finally:
        for conn in conns.values():
            conn.close()
    configured = set(config.tables)
    orphans = sorted({t for phase in PHASES for t in rows[phase] if t not in configured})
    total = len(config.tables)
    return {"created": created, "existing": {p: total - created[p] for p in PHASES}, "not_configured": orphans}


def _all_rows(settings: Settings, conns: dict[str, Any]) -> dict[str, dict[str, tuple]]:
    return {phase: tracking.for_phase(settings, phase).all_rows(conns[tracking.PHASE_SIDE[phase]], phase)
            if tracking.PHASE_SIDE[phase] in conns else {} for phase in PHASES}


def when(value: Any) -> str | None:
    """A moment as the operator reads it: UTC, to the second, with its zone. The tracking stores UTC
    (naive values are UTC: the ETL writes them so); zone-aware values are converted."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.replace(microsecond=0).isoformat(sep=" ") + " UTC"
    return _text(value)


def _text(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    return value


def _summaries(settings: Settings, conns: dict[str, Any]) -> dict[tuple[str, str], dict[str, tuple]]:
    """(table, phase) -> status -> (latest start, its rows written, its error, rows written by all)."""
    out: dict[tuple[str, str], dict[str, tuple]] = {}
    for side, conn in conns.items():
        for table, phase, status, started, rows, error, total in tracking.store(settings, side).history_summary(conn):
            out.setdefault((table, phase), {})[status] = (started, rows, error, total)
    return out


def status_report(settings: Settings, config: EtlConfig) -> dict[str, Any]:
    _unreachable.clear()
    conns = _connect(settings, analytics_optional=True)
    try:
        rows = _all_rows(settings, conns)
        history = _summaries(settings, conns)
        rejects = tracking.store(settings, "replica").all_rejects(conns["replica"])
    finally:
        for conn in conns.values():
            conn.close()
    tables = []
    for name, table in config.tables.items():
        entry: dict[str, Any] = {"table": name, "primary_incremental_column": table.primary_incremental_column,
                                 "extraction_strategy": table.extraction_strategy}
        for phase in PHASES:
            row = rows[phase].get(name)
            runs = history.get((name, phase), {})
            success = runs.get("success")
            failure = max((runs[s] for s in ("failed", "interrupted") if s in runs), key=lambda r: r[0], default=None)
            entry[phase] = None if row is None else {
                "status": row[1], "primary_column_name": row[2], "last_primary_value": _text(row[3]),
                "rows": row[4], "rows_last_run": row[4], "rows_total": int(success[3]) if success else None,
                "last_run": when(row[5]) if row[1] != "pending" else None,
                "last_success": when(success[0]) if success else None,
                "last_failure": when(failure[0]) if failure else None,
                "last_error": failure[2] if failure else None,
            }
        entry["rejected"] = [tracking.describe_reject(name, row) for row in rejects.get(name, [])]
        tables.append(entry)
    with_primary = [t for t in tables if t["primary_incremental_column"]]
    covered = [t for t in with_primary
               if all(t[p] and t[p]["last_primary_value"] is not None for p in ("copy", "load"))]
    return {
        "tables": tables,
        "coverage": {"with_watermark": len(covered), "with_primary_column": len(with_primary)},
        "not_configured": sorted({t for p in PHASES for t in rows[p] if t not in config.tables}),
        "unreachable": list(_unreachable),
    }


def format_status(report: dict[str, Any]) -> str:
    """One line per table and phase; rows: changed in the last run / written by all successful runs."""
    header = (f"{'table':<16} {'phase':<9} {'status':<11} {'column':<14} {'last value':<26} "
              f"{'rows last/total':>19}  {'last success':<23}  last failure")
    lines = [header, "-" * len(header)]
    for entry in report["tables"]:
        for phase in PHASES:
            row = entry[phase] or {}
            last = row.get("rows_last_run")
            total = row.get("rows_total")
            rows = f"{'-' if last is None else f'{last:,}'}/{'-' if total is None else f'{total:,}'}"
            failure = row.get("last_failure") or "-"
            if row.get("last_failure") and row.get("last_error"):
                failure += f" ({first_line(row['last_error'])[:80]})"
            lines.append(f"{entry['table']:<16} {phase:<9} {str(row.get('status', '-')):<11} "
                         f"{str(row.get('primary_column_name') or '-'):<14} {str(row.get('last_primary_value') or '-'):<26} "
                         f"{rows:>19}  {row.get('last_success') or '-':<23}  {failure}")
    for entry in report["tables"]:  # rows the copy could not move: retried every run, exit 1 until they move
        if entry.get("rejected"):
            lines.append(f"{entry['table']}: {len(entry['rejected'])} row(s) rejected by the copy; "
                         f"{entry['rejected'][0]}")
    cov = report["coverage"]
    lines.append(f"tables with a primary incremental column whose tracking holds a value: "
                 f"{cov['with_watermark']} of {cov['with_primary_column']}")
    if report["not_configured"]:
        lines.append(f"tracking rows of tables no longer configured: {', '.join(report['not_configured'])}")
    for reason in report.get("unreachable", []):
        lines.append(f"load and transform not shown: {reason}")
    return "\n".join(lines)


# ---------------------------------------------------------------- etl history

_RELATIVE = re.compile(r"^([0-9]+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HISTORY_PHASES = ("copy", "load", "transform", "reconcile")


def parse_since(text: str | None, now: dt.datetime | None = None) -> dt.datetime:
    """--since: an age (30m, 12h, 2d, 1w) or a UTC date or date and time (2025-06-01, 2025-06-01 02:00)."""
    if not text:
        return dt.datetime(1970, 1, 1)
    now = now or tracking.utc_now()
    found = _RELATIVE.match(text.strip())
    if found:
        return now - dt.timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    try:
        value = dt.datetime.fromisoformat(text.strip().removesuffix("Z").removesuffix(" UTC"))
    except ValueError:
        raise ConfigError(f"etl history: --since {text!r}: expected an age (30m, 12h, 2d, 1w) or a UTC date "
                          f"or date and time (2025-06-01, 2025-06-01 02:00)") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def history(settings: Settings, *, table: str | None = None, phase: str | None = None, since: str | None = None,
            limit: int = 100) -> list[dict[str, Any]]:
    """`etl history`: the run history of every phase (copy in the replica, the others in the analytics
    database), newest first, at most `limit` rows."""
    if phase is not None and phase not in HISTORY_PHASES:
        raise ConfigError(f"etl history: --phase {phase!r}: expected one of {', '.join(HISTORY_PHASES)}")
    if limit < 1:
        raise ConfigError(f"etl history: --limit must be a whole number >= 1, got {limit}")
    start = parse_since(since)
    conns = _connect(settings)
    found = []
    try:
        for side, conn in conns.items():
            for r in tracking.store(settings, side).history_rows(conn, table=table, phase=phase, since=start,
                                                                 limit=limit):
                started, finished = r[11], r[12]
                if isinstance(finished, dt.datetime) and finished.tzinfo is not None:
                    finished = finished.astimezone(dt.timezone.utc).replace(tzinfo=None)
                found.append({
                    "database": side, "id": r[0], "phase": r[1], "table": r[2], "strategy": r[3], "status": r[4],
                    "watermark_before": r[5], "watermark_after": r[6], "rows_read": r[7], "rows_written": r[8],
                    "notes": r[9], "error": r[10], "started_at": when(started),
                    "seconds": round((finished - started).total_seconds(), 2) if finished and started else None,
                    "_sort": started,
                })
    finally:
        for conn in conns.values():
            conn.close()
    found.sort(key=lambda h: h.pop("_sort"), reverse=True)
    return found[:limit]


def format_history(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs recorded (for that selection)"
    header = (f"{'started':<23}  {'phase':<9} {'table':<16} {'status':<11} {'strategy':<8} "
              f"{'read':>9} {'written':>9} {'seconds':>8}  window / error")
    lines = [header, "-" * len(header)]
    for h in rows:
        window = f"{h['watermark_before'] or '-'} -> {h['watermark_after'] or '-'}"
        tail = f"error: {first_line(h['error'])}" if h["error"] else window
        seconds = "-" if h["seconds"] is None else f"{h['seconds']:.2f}"
        lines.append(f"{h['started_at'] or '-':<23}  {h['phase']:<9} {h['table']:<16} {h['status']:<11} "
                     f"{h['strategy'] or '-':<8} {h['rows_read']:>9,} {h['rows_written']:>9,} {seconds:>8}  {tail}")
    return "\n".join(lines)
