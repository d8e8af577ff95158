"""`etl init-tracking` and `etl status`: the tracking rows of all three phases (through etl/tracking.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from etl import tracking
from etl.config import EtlConfig
from etl.dialects import for_url, mysql
from etl.settings import Settings

PHASES = ("copy", "load", "transform")


def _connect(settings: Settings) -> dict[str, Any]:
    """A connection to the replica and to the analytics database, by tracking side."""
    replica = mysql.connect(settings.replica_url, role="replica")
    try:
        return {"replica": replica, "analytics": for_url(settings.analytics_url).connect(settings.analytics_url)}
    except BaseException:
        replica.close()
        raise


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
            for phase in PHASES}


def _text(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    return value


def status_report(settings: Settings, config: EtlConfig) -> dict[str, Any]:
    conns = _connect(settings)
    try:
        rows = _all_rows(settings, conns)
    finally:
        for conn in conns.values():
            conn.close()
    tables = []
    for name, table in config.tables.items():
        entry: dict[str, Any] = {"table": name, "primary_incremental_column": table.primary_incremental_column,
                                 "extraction_strategy": table.extraction_strategy}
        for phase in PHASES:
            row = rows[phase].get(name)
            entry[phase] = None if row is None else {
                "status": row[1], "primary_column_name": row[2], "last_primary_value": _text(row[3]),
                "rows": row[4], "last_run": _text(row[5]),
            }
        tables.append(entry)
    with_primary = [t for t in tables if t["primary_incremental_column"]]
    covered = [t for t in with_primary
               if all(t[p] and t[p]["last_primary_value"] is not None for p in ("copy", "load"))]
    return {
        "tables": tables,
        "coverage": {"with_watermark": len(covered), "with_primary_column": len(with_primary)},
        "not_configured": sorted({t for p in PHASES for t in rows[p] if t not in config.tables}),
    }


def format_status(report: dict[str, Any]) -> str:
    header = f"{'table':<16} {'phase':<9} {'status':<9} {'column':<14} {'last value':<26} {'rows':>9}  last run"
    lines = [header, "-" * len(header)]
    for entry in report["tables"]:
        for phase in PHASES:
            row = entry[phase] or {}
            lines.append(f"{entry['table']:<16} {phase:<9} {str(row.get('status', '-')):<9} "
                         f"{str(row.get('primary_column_name') or '-'):<14} {str(row.get('last_primary_value') or '-'):<26} "
                         f"{str(row.get('rows') if row.get('rows') is not None else '-'):>9}  {row.get('last_run') or '-'}")
    cov = report["coverage"]
    lines.append(f"tables with a primary incremental column whose tracking holds a value: "
                 f"{cov['with_watermark']} of {cov['with_primary_column']}")
    if report["not_configured"]:
        lines.append(f"tracking rows of tables no longer configured: {', '.join(report['not_configured'])}")
    return "\n".join(lines)
