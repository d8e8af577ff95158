"""`python -m etl.tools.bench` (`make bench`): the ETL against the machine's own limits, side by side, in one run.

It builds its own demo source (etl.tools.demo.build_demo_source) in uniquely named databases on the configured
servers -- never the demo's ``opendental*`` databases -- and drops them at the end (``--keep`` keeps
them). Every `etl` figure is a subprocess of the venv's ``etl`` command, timed from start to exit (so it
includes the ~0.7 s of Python start-up and the tracking-schema check), with its peak RSS read from
os.wait4. Baselines:

* pipe: ``mariadb --batch --raw --quick`` running the load's own COPY-text SELECT on the replica table
  (sql_templates/mysql/bench/pipe_select.sql.j2, the same macros as the load), piped into ``psql``
  ``COPY ... FROM STDIN`` into a table defined like raw.<table> (same keys and indexes): the practical
  limit of moving the table MySQL -> PostgreSQL on this machine.
* INSERT ... SELECT: the same table copied server-side into an empty same-definition table of another
  database (``mariadb -e``): the limit of the copy phase.

Scenarios, each the median of ``--runs``:

1. full load (``etl load --full T``) vs the pipe;
2. full copy, same server (``etl copy --full T``) and forced onto the separate-servers path (replica
   URL host ``localhost``) vs INSERT ... SELECT;
3. a no-change incremental pass over every configured table;
4. the pass after 1% of T's rows changed;
5. the pass after a bulk update of 10% of T's rows sharing one timestamp, then the pass after it
   (which must re-read almost nothing).

Each incremental pass is measured twice: as ``etl copy`` then ``etl load`` (two processes, times added:
the figures the targets of issue 6 speak of), and as one ``etl run``, which also runs the transform
phase (dbt) for the tables that got new rows.

Long values: one row of 1 MiB and of 8 MiB MIME-style text (a line break every 76 characters, as a
scanned document in base64) through ``etl copy --full`` (separate servers: the text path) and ``etl load
--full``; MB/s from the seconds both phases' run histories record for the table (no Python start-up).

``--jobs-sweep 1,2,4`` also times ``etl copy --full --jobs N`` and ``etl load --full --jobs N`` of every
table for each N.
Rows/s, seconds, peak MB and the ratio to the baseline are printed as a table, or as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy.engine import URL

from etl.db import fetch_all, fetch_one
from etl.dialects.mysql import RAW_TEXT_CONV
from etl.dialects.mysql import connect as mysql_connect
from etl.dialects.postgres import connect as pg_connect
from etl.render import Ident, render
from etl.settings import Settings, mask_secrets

#: procedurelog rows of the clinic the demo's scale 1.0 stands for.
CLINIC_PROCEDURELOG = 818_050
DEFAULT_ROWS = 1_000_000
TABLE = "procedurelog"
#: The long-value table (mysql/bench/create_big_table) and the sizes of its one value.
BIG_TABLE, BIG_SIZES = "bigdocument", (1 << 20, 8 << 20)
KEY, TOUCHED = "ProcNum", "ProcFee"

TARGETS = {  # measure -> (kind, threshold, text); the incremental ones on copy + load (issue 6)
    "load_full": ("ratio_min", 0.8, ">= 0.8 x pipe rows/s"),
    "copy_same_server": ("ratio_min", 0.9, ">= 0.9 x INSERT...SELECT rows/s"),
    "copy_separate_servers": ("ratio_min", 0.5, ">= 0.5 x INSERT...SELECT rows/s"),
    "phases_no_change": ("seconds_max", 2.0, "< 2 s"),
    "phases_after_1pct": ("seconds_max", 3.0, "< 3 s"),
    "phases_after_bulk": ("seconds_max", 5.0, "< 5 s"),
    "phases_after_that": ("reread_max", 1000, "re-reads (almost) nothing"),
    "run_after_that": ("reread_max", 1000, "re-reads (almost) nothing"),
}
RSS_LIMIT_MB = 300


@dataclass
class Sample:
    seconds: float
    rows: int
    peak_mb: float | None = None
    reread: int | None = None     # rows the ETL read (copy + load) of the benchmark's table, incremental runs
    reread_all: int | None = None  # the same over every table (full_table lookups are read in full every run)
    megabytes: float | None = None  # long values: MiB moved (MB/s = megabytes / seconds)


@dataclass
class Measure:
    name: str
    label: str
    baseline: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def median(self, attribute: str) -> float | None:
        values = [getattr(s, attribute) for s in self.samples if getattr(s, attribute) is not None]
        return statistics.median(values) if values else None

    def summary(self) -> dict[str, Any]:
        seconds, rows = self.median("seconds"), self.median("rows")
        return {
            "name": self.name, "label": self.label, "baseline": self.baseline, "runs": len(self.samples),
            "seconds": seconds, "rows": int(rows) if rows is not None else None,
            "rows_per_s": (rows / seconds) if rows and seconds else None,
            "peak_mb": max((s.peak_mb for s in self.samples if s.peak_mb is not None), default=None),
            "rows_read": int(self.median("reread")) if self.median("reread") is not None else None,
            "rows_read_all_tables": (int(self.median("reread_all")) if self.median("reread_all") is not None
                                     else None),
            "mb_per_s": (self.median("megabytes") / seconds) if self.median("megabytes") and seconds else None,
            "samples": [asdict(s) for s in self.samples],
        }


class Bench:
    def __init__(self, base: Settings, *, rows: int, scale: float, runs: int, seed: int, keep: bool, quiet: bool):
        tag = f"etlbench_{uuid.uuid4().hex[:8]}"
        self.names = {"source": f"{tag}_src", "replica": f"{tag}_rep", "baseline": f"{tag}_base",
                      "analytics": f"{tag}_ana"}
        self.settings = replace(
            base,
            source_url=base.source_url.set(database=self.names["source"]),
            replica_url=base.replica_url.set(database=self.names["replica"]),
            analytics_url=base.analytics_url.set(database=self.names["analytics"]),
        )
        self.rows, self.scale, self.runs, self.seed, self.keep, self.quiet = rows, scale, runs, seed, keep, quiet
        self.etl = _etl_command()
        self.measures: dict[str, Measure] = {}
        self.setup: dict[str, float] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="etlbench-"))

    # ---- helpers -------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def env(self, *, separate: bool = False) -> dict[str, str]:
        s = self.settings
        replica = s.replica_url.set(host="localhost") if separate else s.replica_url
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
        env.update({
            "ETL_SOURCE_URL": _plain(s.source_url), "ETL_REPLICA_URL": _plain(replica),
            "ETL_ANALYTICS_URL": _plain(s.analytics_url), "ETL_RAW_SCHEMA": s.raw_schema,
            "ETL_TABLES": str(Path(s.tables_path).resolve()), "ETL_PROGRESS": "0",
        })
        return env

    def measure(self, name: str, label: str, baseline: str | None = None) -> Measure:
        if name not in self.measures:
            self.measures[name] = Measure(name, label, baseline)
        return self.measures[name]

    def run_etl(self, *args: str, separate: bool = False, tables: Path | None = None) -> tuple[float, float]:
        """Run `etl ARGS`; (seconds, peak RSS MB). A failure stops the benchmark with its output."""
        out = self.workdir / "etl.out"
        env = self.env(separate=separate)
        if tables is not None:
            env["ETL_TABLES"] = str(tables)
        with open(out, "wb") as handle:
            started = time.perf_counter()
            proc = subprocess.Popen([*self.etl, *args], env=env, stdout=handle,
                                    stderr=subprocess.STDOUT, cwd=self.workdir)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            tail = out.read_text(errors="replace").splitlines()[-15:]
            raise SystemExit(f"etl {' '.join(args)} failed (exit {proc.returncode}):\n" + mask_secrets("\n".join(tail)))
        return seconds, usage.ru_maxrss / 1024.0

    def mysql(self, database: str | None = None):
        url = self.settings.source_url.set(database=database) if database else self.settings.source_url
        return mysql_connect(url, database=database is not None, role="benchmark", conv=RAW_TEXT_CONV)

    def mysql_cli(self, sql: str, *, stdout=subprocess.DEVNULL) -> subprocess.Popen:
        url = self.settings.source_url
        env = dict(os.environ, MYSQL_PWD=url.password or "")
        session = render("mysql/session_init").plain().strip()
        return subprocess.Popen(["mariadb", "--batch", "--raw", "--quick", "--skip-column-names",
                                 "--default-character-set=utf8mb4", "-h", url.host or "127.0.0.1",
                                 "-P", str(url.port or 3306), "-u", url.username or "root",
                                 "-e", f"{session};\n{sql}"], env=env, stdout=stdout)

    def psql_cli(self, sql: str, *, stdin) -> subprocess.Popen:
        url = self.settings.analytics_url
        env = dict(os.environ, PGPASSWORD=url.password or "")
        return subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", url.host or "127.0.0.1",
                                 "-p", str(url.port or 5432), "-U", url.username or "postgres",
                                 "-d", self.names["analytics"], "-c", sql], env=env, stdin=stdin,
                                stdout=subprocess.DEVNULL)

    def history_mark(self) -> tuple[int, int]:
        """The last run-history ids (replica, raw): rows read after them belong to the next run."""
        rep = self.mysql(self.names["replica"])
        pg = pg_connect(self.settings.analytics_url)
        try:
            a = fetch_one(rep, render("mysql/bench/history_mark"))[0]
            b = fetch_one(pg, render("postgres/bench/history_mark", schema=Ident(self.settings.raw_schema)))[0]
            return int(a or 0), int(b or 0)
        finally:
            rep.close()
            pg.close()

    def rows_read_since(self, mark: tuple[int, int]) -> tuple[int, int]:
        """Rows copy and load read after `mark`: (of the benchmark's table, of every table)."""
        rep = self.mysql(self.names["replica"])
        pg = pg_connect(self.settings.analytics_url)
        try:
            rows = fetch_all(rep, render("mysql/bench/history_rows"), {"after": mark[0]})
            rows += fetch_all(pg, render("postgres/bench/history_rows", schema=Ident(self.settings.raw_schema)),
                              {"after": mark[1]})
        finally:
            rep.close()
            pg.close()
        per_table = [(_text(name), int(n or 0)) for name, n in rows]
        return sum(n for name, n in per_table if name == TABLE), sum(n for _, n in per_table)

    def touch(self, modulus: int, remainder: int) -> int:
        """Change 1 in `modulus` source rows in one UPDATE; wait until their second has closed."""
        conn = self.mysql(self.names["source"])
        try:
            with conn.cursor() as cur:
                sql, params = render("mysql/bench/touch_rows", database=Ident(self.names["source"]),
                                     table=Ident(TABLE), column=Ident(TOUCHED),
                                     key=Ident(KEY)).to_dbapi({"modulus": modulus, "remainder": remainder})
                cur.execute(sql, params)
                changed = cur.rowcount
            conn.commit()
        finally:
            conn.close()
        time.sleep(1.1)  # the next run's horizon (the server's current second, excluded) is past that second
        return changed

    # ---- the steps -----------------------------------------------------------------------------------
    def build(self) -> None:
        from etl.tools.demo import build_demo_source

        self.say(f"building the demo source {self.names['source']} at scale {self.scale:.4f} "
                 f"({self.rows:,} {TABLE} rows)...")
        started = time.perf_counter()
        self.counts = build_demo_source(self.settings.source_url, scale=self.scale, seed=self.seed)
        self.setup["build_source_s"] = time.perf_counter() - started
        self.say("migrate, then the first copy and load of every table...")
        self.run_etl("migrate")
        seconds, peak = self.run_etl("copy")
        self.setup["first_copy_all_s"], self.setup["first_copy_all_peak_mb"] = seconds, peak
        seconds, peak = self.run_etl("load")
        self.setup["first_load_all_s"], self.setup["first_load_all_peak_mb"] = seconds, peak
        conn = self.mysql()
        try:
            with conn.cursor() as cur:
                sql, _ = render("mysql/demo/create_database", database=Ident(self.names["baseline"])).to_dbapi({})
                cur.execute(sql)
        finally:
            conn.close()
        rep = self.mysql(self.names["replica"])
        try:
            from etl.dialects import mysql, postgres
            self.columns = postgres.map_table(mysql.reflect_table(rep, self.names["replica"], TABLE)).columns
        finally:
            rep.close()

    def pipe(self) -> Sample:
        schema, target = Ident(self.settings.raw_schema), Ident(f"{TABLE}__bench_pipe")
        pg = pg_connect(self.settings.analytics_url)
        pg.autocommit = True
        try:
            with pg.cursor() as cur:
                cur.execute(render("postgres/bench/drop_table", schema=schema, table=target).plain())
                cur.execute(render("postgres/bench/create_like", schema=schema, target=target,
                                   table=Ident(TABLE)).plain())
            select = render("mysql/bench/pipe_select", columns=self.columns, database=Ident(self.names["replica"]),
                            table=Ident(TABLE)).plain()
            copy = render("postgres/copy_from_stdin", schema=schema, table=target,
                          columns=tuple(c.name for c in self.columns)).plain()
            started = time.perf_counter()
            producer = self.mysql_cli(select, stdout=subprocess.PIPE)
            consumer = self.psql_cli(copy, stdin=producer.stdout)
            producer.stdout.close()
            if consumer.wait() != 0 or producer.wait() != 0:
                raise SystemExit("the mariadb | psql pipe failed")
            seconds = time.perf_counter() - started
            rows = fetch_one(pg, render("postgres/bench/count_rows", schema=schema, table=target))[0]
            with pg.cursor() as cur:
                cur.execute(render("postgres/bench/drop_table", schema=schema, table=target).plain())
        finally:
            pg.close()
        return Sample(seconds, int(rows))

    def insert_select(self) -> Sample:
        names = self.names
        conn = self.mysql()
        try:
            with conn.cursor() as cur:
                for statement in (render("mysql/bench/drop_table", database=Ident(names["baseline"]),
                                         table=Ident(TABLE)),
                                  render("mysql/bench/create_like", target_db=Ident(names["baseline"]),
                                         source_db=Ident(names["replica"]), table=Ident(TABLE))):
                    cur.execute(statement.to_dbapi({})[0])
        finally:
            conn.close()
        sql = render("mysql/bench/insert_select", target_db=Ident(names["baseline"]), source_db=Ident(names["source"]),
                     table=Ident(TABLE), columns=tuple(c.name for c in self.columns)).plain()
        started = time.perf_counter()
        if self.mysql_cli(sql).wait() != 0:
            raise SystemExit("the baseline INSERT ... SELECT failed")
        seconds = time.perf_counter() - started
        conn = self.mysql()
        try:
            rows = fetch_one(conn, render("mysql/bench/count_rows", database=Ident(names["baseline"]),
                                          table=Ident(TABLE)))[0]
            with conn.cursor() as cur:
                cur.execute(render("mysql/bench/drop_table", database=Ident(names["baseline"]),
                                   table=Ident(TABLE)).to_dbapi({})[0])
        finally:
            conn.close()
        return Sample(seconds, int(rows))

    def one_round(self, index: int) -> None:
        n = self.counts[TABLE]
        self.say(f"round {index + 1} of {self.runs}: baselines and full copy/load of {TABLE}...")
        self.measure("pipe", "mariadb --batch | psql COPY (baseline)").samples.append(self.pipe())
        seconds, peak = self.run_etl("load", "--full", TABLE)
        self.measure("load_full", f"etl load --full {TABLE}", "pipe").samples.append(Sample(seconds, n, peak))
        self.measure("insert_select", "INSERT ... SELECT, same server (baseline)").samples.append(self.insert_select())
        seconds, peak = self.run_etl("copy", "--full", TABLE)
        self.measure("copy_same_server", f"etl copy --full {TABLE} (same server)", "insert_select").samples.append(
            Sample(seconds, n, peak))
        seconds, peak = self.run_etl("copy", "--full", TABLE, separate=True)
        self.measure("copy_separate_servers", f"etl copy --full {TABLE} (separate servers)",
                     "insert_select").samples.append(Sample(seconds, n, peak))

        self.say("  incremental runs: etl copy + etl load...")
        self.run_etl("run")  # settle: the full copies above left the load (and the transform) behind
        self.timed("phases_no_change", "etl copy + etl load, nothing changed")
        changed = self.touch(100, index % 100)
        self.timed("phases_after_1pct", f"etl copy + etl load after {changed:,} rows changed (1%)", rows=changed)
        changed = self.touch(10, (2 * index) % 10)
        self.timed("phases_after_bulk", f"etl copy + etl load after {changed:,} rows, one second", rows=changed)
        self.timed("phases_after_that", "etl copy + etl load after that (no change)")
        self.say("  incremental runs: etl run (copy, load, transform)...")
        self.run_etl("run")  # settle: transform what the phases above loaded
        self.timed("run_no_change", "etl run, nothing changed", run=True)
        changed = self.touch(100, (index + 50) % 100)
        self.timed("run_after_1pct", f"etl run after {changed:,} rows changed (1%)", rows=changed, run=True)
        changed = self.touch(10, (2 * index + 1) % 10)
        self.timed("run_after_bulk", f"etl run after {changed:,} rows, one second", rows=changed, run=True)
        self.timed("run_after_that", "etl run after that (no change)", run=True)

    def timed(self, name: str, label: str, rows: int | None = None, *, run: bool = False) -> None:
        """One incremental pass over every table: `etl run`, or `etl copy` then `etl load` (two processes:
        their times add up, the peak is the larger). Rows read come from both run histories."""
        mark = self.history_mark()
        if run:
            seconds, peak = self.run_etl("run")
        else:
            copy_s, copy_mb = self.run_etl("copy")
            load_s, load_mb = self.run_etl("load")
            seconds, peak = copy_s + load_s, max(copy_mb, load_mb)
        reread, reread_all = self.rows_read_since(mark)
        self.measure(name, label).samples.append(Sample(seconds, rows if rows is not None else reread, peak, reread,
                                                        reread_all))

    def big_values(self) -> None:
        """MB/s of one long MIME-style text through copy (separate servers) and load, per size."""
        tables = self.workdir / "big_tables.yml"
        tables.write_text(f"tables:\n  {BIG_TABLE}:\n    primary_key: DocNum\n    incremental_columns: [DateTStamp]\n"
                          f"    primary_incremental_column: DateTStamp\n    extraction_strategy: full_table\n")
        database, table = Ident(self.names["source"]), Ident(BIG_TABLE)
        conn = self.mysql(self.names["source"])
        try:
            with conn.cursor() as cur:
                if not getattr(self, "big_table", False):
                    cur.execute(render("mysql/bench/create_big_table", database=database, table=table).plain())
                    self.big_table = True
                for size in BIG_SIZES:
                    line = "".join(chr(65 + (i * 7) % 26) for i in range(76)) + "\r\n"
                    value = (line * (size // len(line) + 1))[:size]
                    cur.execute(*render("mysql/bench/big_value_put", database=database, table=table).to_dbapi(
                        {"value": value, "stamp": "2024-01-01 00:00:00"}))
                    conn.commit()
                    mark = self.history_mark()
                    self.run_etl("copy", "--full", BIG_TABLE, separate=True, tables=tables)
                    self.run_etl("load", "--full", BIG_TABLE, tables=tables)
                    seconds = self.phase_seconds(mark)
                    name = f"big_text_{size >> 20}mib"
                    self.measure(name, f"{size >> 20} MiB text, line breaks: copy (separate) + load").samples.append(
                        Sample(seconds, 1, megabytes=size / (1 << 20)))
        finally:
            conn.close()

    def phase_seconds(self, mark: tuple[int, int]) -> float:
        """Seconds copy and load spent on the long-value table after `mark` (their run histories)."""
        rep = self.mysql(self.names["replica"])
        pg = pg_connect(self.settings.analytics_url)
        try:
            a = fetch_one(rep, render("mysql/bench/history_seconds"), {"after": mark[0], "table": BIG_TABLE})[0]
            b = fetch_one(pg, render("postgres/bench/history_seconds", schema=Ident(self.settings.raw_schema)),
                          {"after": mark[1], "table": BIG_TABLE})[0]
        finally:
            rep.close()
            pg.close()
        return sum(float(_text(v)) for v in (a, b) if v is not None)

    def jobs_sweep(self, jobs: Sequence[int]) -> None:
        """`etl copy --full --jobs N` then `etl load --full --jobs N` of every table, for each N."""
        total = sum(self.counts.values())
        for n in jobs:
            self.say(f"etl copy --full --jobs {n}, etl load --full --jobs {n} (every table)...")
            copy_s, copy_mb = self.run_etl("copy", "--full", "--jobs", str(n))
            load_s, load_mb = self.run_etl("load", "--full", "--jobs", str(n))
            self.measure(f"copy_full_jobs_{n}", f"etl copy --full --jobs {n} (all tables)").samples.append(
                Sample(copy_s, total, copy_mb))
            self.measure(f"load_full_jobs_{n}", f"etl load --full --jobs {n} (all tables)").samples.append(
                Sample(load_s, total, load_mb))

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.keep:
            self.say(f"kept: MySQL {self.names['source']}, {self.names['replica']}, {self.names['baseline']}; "
                     f"PostgreSQL {self.names['analytics']}")
            return
        conn = self.mysql()
        try:
            with conn.cursor() as cur:
                for key in ("source", "replica", "baseline"):
                    cur.execute(render("mysql/demo/drop_database", database=Ident(self.names[key])).to_dbapi({})[0])
        finally:
            conn.close()
        admin = pg_connect(self.settings.analytics_url, database="postgres")
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(render("postgres/bench/drop_database", database=Ident(self.names["analytics"])).plain())
        finally:
            admin.close()

    # ---- the report ----------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        measures = {name: m.summary() for name, m in self.measures.items()}
        for summary in measures.values():
            base = measures.get(summary["baseline"]) if summary["baseline"] else None
            summary["ratio"] = (summary["rows_per_s"] / base["rows_per_s"]
                                if base and base["rows_per_s"] and summary["rows_per_s"] else None)
        targets = []
        for name, (kind, threshold, text) in TARGETS.items():
            m = measures.get(name)
            if m is None:
                continue
            value = {"ratio_min": m["ratio"], "seconds_max": m["seconds"], "reread_max": m["rows_read"]}[kind]
            met = value is not None and (value >= threshold if kind == "ratio_min" else value < threshold)
            targets.append({"measure": name, "target": text, "value": value, "met": met})
        for name, m in measures.items():
            if m["peak_mb"] is not None:
                targets.append({"measure": name, "target": f"peak RSS < {RSS_LIMIT_MB} MB", "value": m["peak_mb"],
                                "met": m["peak_mb"] < RSS_LIMIT_MB})
        return {"machine": machine(self.settings), "table": TABLE, "rows": self.counts.get(TABLE),
                "scale": self.scale, "runs": self.runs, "tables": self.counts, "setup": self.setup,
                "measures": measures, "targets": targets}


def format_report(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"etl bench: {report['rows']:,} {report['table']} rows (scale {report['scale']:.4f}), "
             f"median of {report['runs']} run(s)",
             f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB; {m['mysql']}; {m['postgres']}",
             "",
             f"{'measure':<52} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak MB':>8} {'ratio':>6} {'MB/s':>6}"]
    for s in report["measures"].values():
        lines.append(f"{s['label'][:52]:<52} {_num(s['rows']):>10} {_fix(s['seconds'], 2):>8} "
                     f"{_num(s['rows_per_s']):>10} {_fix(s['peak_mb'], 0):>8} {_fix(s['ratio'], 2):>6} "
                     f"{_fix(s.get('mb_per_s'), 1):>6}")
    lines += ["", f"rows: rows moved (baselines, full runs) or changed (incremental passes). Rows the incremental "
              f"passes read (copy + load), of {report['table']} / of every table (full_table lookups are read "
              "in full every time):"]
    for s in report["measures"].values():
        if s["rows_read"] is not None:
            lines.append(f"  {s['label'][:56]:<56} {s['rows_read']:>10,} / {s['rows_read_all_tables']:>10,}")
    lines += ["", "targets:"]
    for t in report["targets"]:
        value = t["value"]
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"  {'ok  ' if t['met'] else 'MISS'} {t['measure']:<24} {t['target']:<34} {shown}")
    setup = report["setup"]
    lines += ["", "setup: " + ", ".join(f"{k} {v:.1f}" for k, v in setup.items())]
    return "\n".join(lines)


def machine(settings: Settings) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    conn = mysql_connect(settings.source_url, database=False, role="benchmark", conv=RAW_TEXT_CONV)
    try:
        version, pool = fetch_one(conn, render("mysql/bench/server_info"))
    finally:
        conn.close()
    pg = pg_connect(settings.analytics_url, database="postgres")
    try:
        pg_version, shared = fetch_one(pg, render("postgres/bench/server_info"))
    finally:
        pg.close()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory, "python": platform.python_version(),
            "mysql": f"MariaDB/MySQL {_text(version)} (innodb_buffer_pool_size {int(_text(pool)) // 2**20} MiB)",
            "postgres": f"PostgreSQL {pg_version} (shared_buffers {shared})"}


def _etl_command() -> list[str]:
    script = Path(sys.executable).with_name("etl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "etl"]


def _plain(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fix(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.tools.bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, help=f"{TABLE} rows (default {DEFAULT_ROWS:,}; the other demo tables "
                                               "at the clinic's proportions)")
    size.add_argument("--scale", type=float, help=f"demo scale instead of --rows (1.0 = {CLINIC_PROCEDURELOG:,} "
                                                  f"{TABLE} rows)")
    parser.add_argument("--runs", type=int, default=1, help="median of this many runs of each measure (default 1)")
    parser.add_argument("--jobs-sweep", default="", metavar="N,N,...",
                        help="also time `etl copy/load --full --jobs N` of every table for each N (e.g. 1,2,4)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's databases")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    scale = args.scale if args.scale else (args.rows or DEFAULT_ROWS) / CLINIC_PROCEDURELOG
    rows = round(scale * CLINIC_PROCEDURELOG)
    for tool in ("mariadb", "psql"):
        if shutil.which(tool) is None:
            print(f"error: the baseline needs the `{tool}` client on PATH", file=sys.stderr)
            return 2
    bench = Bench(Settings.load(), rows=rows, scale=scale, runs=max(1, args.runs), seed=args.seed, keep=args.keep,
                  quiet=args.quiet)
    try:
        bench.build()
        for index in range(bench.runs):
            bench.one_round(index)
            bench.big_values()
        if args.jobs_sweep:
            bench.jobs_sweep([int(n) for n in args.jobs_sweep.split(",") if n.strip()])
        report = bench.report()
    finally:
        bench.cleanup()
    print(json.dumps(report, indent=2, default=str) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
