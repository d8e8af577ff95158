"""Command line: arguments -> runner calls; exit codes. No SQL here.

Exit codes: 0 success, 1 a table or database failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from etl.errors import ConfigError, EtlError, mask_secrets
from etl.settings import Settings

log = logging.getLogger("etl")


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


class _JsonFormatter(logging.Formatter):
    """ETL_LOG_FORMAT=json: one JSON object per line for log shippers (time in UTC, level, logger, message;
    the traceback as `exception` when there is one); secrets masked like every other line."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime as dt

        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": mask_secrets(record.getMessage())}
        if record.exc_info:
            entry["exception"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    import os

    from etl.progress import LogHandler
    handler = LogHandler(sys.stderr)
    log_format = os.environ.get("ETL_LOG_FORMAT", "text").strip().lower() or "text"
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
        os.environ.setdefault("ETL_PROGRESS", "log")  # no terminal line between JSON lines
    else:
        handler.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)
    if quiet:  # errors and the final summary only
        os.environ["ETL_PROGRESS"] = "0"
    if log_format not in ("text", "json"):
        log.warning("ETL_LOG_FORMAT=%s: expected text or json; writing text", log_format)
    # Alembic narrates every plugin and revision at INFO; `etl migrate` prints its own summary.
    logging.getLogger("alembic").setLevel(logging.INFO if verbose else logging.WARNING)


def _version() -> str:
    """The installed distribution's version (the package's own when run from a checkout without one)."""
    from importlib import metadata

    from etl import __version__
    try:
        return metadata.version("opendental-etl")
    except metadata.PackageNotFoundError:
        return __version__


def _jobs(text: str) -> int:
    """--jobs: a whole number >= 1 (0 or less would run nothing, or everything at once)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etl", description="Incremental, tracked ETL for OpenDental.")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging and tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="errors and the final summary only (no progress, no per-table lines)")
    parser.add_argument("--clinic", metavar="NAME",
                        help="run for one clinic of clinics.yml (ETL_CLINICS): its databases, raw schema, tables.yml")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="create the replica and analytics databases if missing; upgrade both tracking schemas")
    demo = sub.add_parser("demo-data", help="(re)create the demo source database (ETL_SOURCE_URL) with seeded "
                                            "OpenDental-like data; refuses a database it did not create")
    demo.add_argument("--scale", type=float, default=0.05, help="fraction of a real clinic's row counts (default 0.05)")
    demo.add_argument("--seed", type=int, default=42)
    # not --clinic: that is the global option choosing a clinic of clinics.yml (same dest, it would be lost)
    demo.add_argument("--fact-sheet", action="store_true",
                      help="every table of the fact sheet (93 tables, 18.8M rows at --scale 1.0), not just the 12 demo tables")
    demo.add_argument("--jobs", "-j", type=_jobs, default=2, metavar="N", help="tables filled at once (default 2)")
    demo.add_argument("--force", action="store_true",
                      help="drop and rebuild the database even though etl demo-data did not create it")
    sub.add_parser("init-tracking", help="create missing tracking rows (status pending) for every configured table")
    status = sub.add_parser("status", help="per table and phase: status, watermark, rows changed in the last run "
                                           "and in all, last success and last failure")
    status.add_argument("--json", action="store_true")
    hist = sub.add_parser("history", help="the run history of every phase, newest first: strategy, window, rows, "
                                          "duration, status, error")
    hist.add_argument("table", nargs="?", metavar="TABLE", help="only this table")
    hist.add_argument("--phase", choices=("copy", "load", "transform", "reconcile"))
    hist.add_argument("--since", metavar="WHEN", help="an age (30m, 12h, 2d, 1w) or a UTC date or date and time")
    hist.add_argument("--limit", type=int, default=100, metavar="N", help="at most N runs (default 100)")
    hist.add_argument("--json", action="store_true")
    sub.add_parser("check-config", help="validate tables.yml against the live source schema")
    discover = sub.add_parser("discover", help="write (or merge into) tables.yml every base table of the live source, "
                                               "by explicit rules")
    discover.add_argument("--check", action="store_true",
                          help="change nothing; exit 1 when the source has tables or columns the file does not cover")
    discover.add_argument("--output", "-o", type=Path, metavar="PATH", help="the file to write or check (default ETL_TABLES)")
    discover.add_argument("--no-diff", action="store_true", help="do not print the diff of the file")
    discover.add_argument("--full-table-rows", type=int, metavar="N",
                          help="tables without a server-maintained timestamp of at most N rows are read in full "
                               "(default 10000, or the value the file records)")
    for name, text in (("copy", "source MySQL -> replica MySQL"), ("load", "replica MySQL -> PostgreSQL raw"),
                       ("transform", "PostgreSQL raw -> dbt models (dbt/ or ETL_DBT_PROJECT_DIR), tracked per table"),
                       ("run", "copy, then load, then transform")):
        p = sub.add_parser(name, help=text)
        p.add_argument("tables", nargs="*", metavar="TABLE", help="configured tables (default: all)")
        p.add_argument("--full", action="store_true", help="refresh in full, ignoring stored watermarks")
        p.add_argument("--jobs", "-j", type=_jobs, default=None, metavar="N",
                       help="tables processed in parallel (default 2)")
        p.add_argument("--json", action="store_true", help="print the per-table results as JSON")
        if name in ("load", "run"):
            p.add_argument("--no-reconcile", action="store_true",
                           help="leave delete detection (reconcile) to a separate `etl reconcile`")
    verify = sub.add_parser("verify", help="compare source, replica and raw per table; exit 1 on drift")
    verify.add_argument("tables", nargs="*", metavar="TABLE")
    verify.add_argument("--json", action="store_true")
    reconcile = sub.add_parser("reconcile", help="delete from replica and raw the rows deleted at the source")
    reconcile.add_argument("tables", nargs="*", metavar="TABLE")
    reconcile.add_argument("--json", action="store_true")
    preflight = sub.add_parser("preflight", help="check that a run can start: databases reachable, tracking "
                                                 "at head, tables.yml valid against the live source")
    preflight.add_argument("--json", action="store_true", help="also print the configured tables as JSON")
    clinics = sub.add_parser("clinics", help="list the clinics of clinics.yml (ETL_CLINICS) and their pools")
    clinics.add_argument("--json", action="store_true")
    clinics.add_argument("--airflow-pools", action="store_true",
                         help="print the Airflow pools as JSON for `airflow pools import FILE`")
    dbt = sub.add_parser("dbt", help="run a dbt command on the transform project with the ETL's settings "
                                     "(e.g. `etl dbt source freshness`)")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, metavar="ARGS")
    dbt_sources = sub.add_parser("dbt-sources", help="regenerate the dbt sources (live columns) and a staging model "
                                                     "for every configured table without a hand-written one")
    dbt_sources.add_argument("--check", action="store_true", help="change nothing; exit 1 when a generated file is stale")
    render = sub.add_parser("render", help="print the recipe a phase would follow for a table: its plan, situation, "
                                           "and every step with its branch and SQL")
    render.add_argument("phase", choices=("copy", "load"))
    render.add_argument("table")
    render.add_argument("--strategy", choices=("full", "primary", "fallback"))
    for action in sub._choices_actions:  # `etl COMMAND --help` opens with the one-line description too
        sub.choices[action.dest].description = action.help
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    if args.command in ("copy", "load", "transform", "run", "reconcile"):
        from etl import stop
        stop.install()  # SIGTERM/SIGINT: stop at the next safe point (etl/stop.py)
    try:
        return _dispatch(args)
    except EtlError as exc:
        for line in mask_secrets(str(exc)).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        from etl import stop
        if stop.requested():
            print(stop.report_line(), file=sys.stderr)
            return stop.exit_code()
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, no secrets, traceback only on request
        if args.verbose:
            log.exception("unexpected error")
        print(f"error: {mask_secrets(f'{type(exc).__name__}: {exc}').splitlines()[0]}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "clinics":
        return _clinics(args)
    if args.clinic:  # the clinic's settings for this command (etl/clinics.py), as if exported by hand
        from etl.clinics import clinic_applied
        with clinic_applied(args.clinic):
            return _dispatch_settings(args, Settings.load())
    return _dispatch_settings(args, Settings.load())


def _clinics(args: argparse.Namespace) -> int:
    from etl.clinics import describe_clinics, load_clinics
    config = load_clinics()
    if args.airflow_pools:
        print(json.dumps(config.pools(), indent=2))
        return 0
    rows = describe_clinics(config)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['clinic']}: source {row['source']}, replica {row['replica_database']} on {row['replica']}, "
              f"warehouse {row['warehouse']} schema {row['raw_schema']}, tables {row['tables']}; "
              f"pools {row['source_pool']}, {row['warehouse_pool']}")
    return 0


def _dispatch_settings(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        from etl.migrate import migrate
        for line in migrate(settings):
            print(line)
        return 0
    if args.command == "demo-data":
        from etl.tools.demo import build_demo_source
        from etl.settings import mask_url
        import time
        started = time.monotonic()
        where = f"database {settings.source_url.database!r} on {mask_url(settings.source_url.set(database=None))}"
        print(f"building the demo source: {where}")
        counts = build_demo_source(settings.source_url, scale=args.scale, seed=args.seed, clinic=args.fact_sheet,
                                   jobs=args.jobs, force=args.force)
        for table, rows in counts.items():
            print(f"{table:<16} {rows:>10,} rows")
        print(f"{where}: {len(counts)} tables, {sum(counts.values()):,} rows in {time.monotonic() - started:.1f} s")
        return 0
    if args.command == "discover":
        from etl.discover import run as discover
        if args.full_table_rows is not None and args.full_table_rows < 0:
            raise ConfigError("etl discover: --full-table-rows must be a whole number >= 0")
        return discover(settings, check=args.check, output=args.output, show_diff=not args.no_diff,
                        full_table_max_rows=args.full_table_rows)
    if args.command == "history":  # reads the tracking only: works with any tables.yml, or none
        from etl.status import format_history, history
        rows = history(settings, table=args.table, phase=args.phase, since=args.since, limit=args.limit)
        print(json.dumps(rows, indent=2, default=str) if args.json else format_history(rows))
        return 0
    if args.command == "dbt":
        from etl.phases.transform import dbt_command
        return dbt_command(settings, args.dbt_args)

    from etl.config import load_config
    config = load_config(settings.tables_path)
    if args.command == "check-config":
        from etl.check import check_config
        problems = check_config(settings, config)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{len(problems)} problem(s) found", file=sys.stderr)
            return ConfigError.exit_code
        print(f"{settings.tables_path}: {len(config.tables)} tables OK against the source")
        return 0
    if args.command == "init-tracking":
        from etl.status import init_tracking
        result = init_tracking(settings, config)
        for phase, created in result["created"].items():
            print(f"{phase:<10} created {created}, existed {result['existing'][phase]}")
        if result["not_configured"]:
            print(f"tracking rows of tables no longer configured (kept): {', '.join(result['not_configured'])}")
        return 0
    if args.command == "status":
        from etl.status import format_status, status_report
        report = status_report(settings, config)
        print(json.dumps(report, indent=2, default=str) if args.json else format_status(report))
        return 0
    if args.command in ("verify", "reconcile"):  # not migrated: "run `etl migrate`", not a driver error
        from etl.versions import require
        require(settings)
    if args.command == "verify":
        from etl.verify import format_verify, verify
        report = verify(settings, config, args.tables)
        if args.json:  # the report for a program; the table for the log a person reads (stderr)
            print(json.dumps(report, indent=2, default=str))
        print(format_verify(report), file=sys.stderr if args.json else sys.stdout)
        return 0 if report["ok"] else 1
    if args.command == "reconcile":
        from etl.runner import reconcile
        deleted_by_table = reconcile(settings, config, args.tables)
        if args.json:
            print(json.dumps(deleted_by_table))
        for table, deleted in deleted_by_table.items():
            print(f"{table:<16} deleted {deleted['replica']} from the replica, {deleted['raw']} from raw",
                  file=sys.stderr if args.json else sys.stdout)
        return 0
    if args.command == "preflight":
        from etl.check import check_config
        from etl.runner import preflight
        preflight(settings, ["copy", "load"])  # source answers; replica and analytics tracking at head
        problems = check_config(settings, config)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            raise ConfigError(f"{len(problems)} problem(s) in {settings.tables_path} against the source")
        if args.json:
            print(json.dumps({"tables": [{"table": t.name, "delete_detection": t.delete_detection}
                                         for t in config.tables.values()]}))
        print(f"preflight: databases answer, tracking at head, {len(config.tables)} tables OK against the source",
              file=sys.stderr if args.json else sys.stdout)
        return 0
    if args.command == "render":
        from etl.phases import copy, load
        from etl.recipe import describe
        phase = {"copy": copy, "load": load}[args.phase]
        print(describe(phase.preview(settings, config.select([args.table])[0], strategy=args.strategy)), end="")
        return 0
    if args.command == "dbt-sources":
        from etl.dbt_sources import main as dbt_sources_main
        return dbt_sources_main(["--check"] if args.check else [], settings=settings)
    if args.command in ("copy", "load", "transform", "run"):
        from etl.runner import DEFAULT_JOBS, run_phases
        phases = ["copy", "load", "transform"] if args.command == "run" else [args.command]
        results = run_phases(settings, config, phases, args.tables, full=args.full,
                             jobs=args.jobs if args.jobs is not None else DEFAULT_JOBS,
                             reconcile_after_load=not getattr(args, "no_reconcile", False))
        failed = [r for r in results if not r.ok]
        from etl import stop
        if stop.requested() and args.json:  # a scheduler still gets what did run
            print(json.dumps([dataclasses.asdict(r) for r in results]))
        if stop.requested():  # one line: what stopped it and which table runs it cut short
            cut = sorted({f"{r.phase} {r.table}" for r in results if not r.ok and r.error
                          and ("interrupted" in r.error or "not retried" in r.error)})
            print(f"{stop.report_line()}; {len(results) - len(failed)} table runs succeeded, "
                  f"{len(cut)} interrupted ({', '.join(cut) or 'none'}), "
                  f"{sum(1 for r in failed if r.error and r.error.startswith('not started'))} not started",
                  file=sys.stderr)
            return stop.exit_code()
        if args.json:  # what a scheduler keeps of the run (etl.airflow: the task's return value)
            print(json.dumps([dataclasses.asdict(r) for r in results]))
        out = sys.stderr if args.json else sys.stdout
        ok = [r for r in results if r.ok]
        unchanged = sum(1 for r in ok if not r.rows_written)
        read, written = sum(r.rows_read for r in ok), sum(r.rows_written for r in ok)
        print(f"{len(ok)} table runs succeeded ({unchanged} changed nothing; rows read {read:,}, written "
              f"{written:,}), {len(failed)} failed", file=out)
        for r in failed:  # an error that already names its phase and table (a lock skip) says it once
            named = r.error and r.error.startswith(f"{r.phase} {r.table}")
            print(f"  {r.error}" if named else f"  {r.phase} {r.table}: {r.error}", file=out)
        rejected = [line for r in results for line in r.rejected]
        for line in rejected:  # the table's other rows moved; these did not (etl_copy_rejects)
            print(f"  {line}", file=out)
        return 1 if failed or rejected else 0
    raise AssertionError(args.command)
