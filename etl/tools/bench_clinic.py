"""`python -m etl.tools.bench_clinic` (`make bench-clinic`): a whole clinic end to end, against the machine's limits.

Same rules as `make bench` (etl/tools/bench.py, whose machinery this reuses): its own uniquely named databases on the
configured servers (never the demo's ``opendental*``), dropped at the end (``--keep`` keeps them); every `etl`
figure is a subprocess of the venv's ``etl``, timed start to exit, peak RSS from os.wait4; baselines measured
in the same run; the median of ``--runs``; a table, or JSON (``--json``).

The source: every table of the fact sheet (``etl demo-data --fact-sheet``, 93 tables; ``--scale 1.0`` = 18.8M
rows), built once. Each run, on fresh replica and analytics databases:

1. ``etl discover`` writes the tables.yml (the benchmark's own file), ``etl dbt-sources`` the dbt sources and
   staging models (in the benchmark's copy of the dbt project), ``etl migrate``;
2. the initial full sync: ``etl copy --jobs N`` then ``etl load --jobs N`` (the load also reconciles the
   tables discover gave ``delete_detection: reconcile``), then ``etl transform`` (every staging model);
3. baseline: ``mariadb --batch | psql COPY`` of every table (the load's own COPY-text SELECT, as in
   `make bench`), one table after the other, summed;
4. a simulated clinic day at the source: ~0.5% of all rows inserted, updated and deleted in a practice's
   proportions (securitylog and procedurelog appends, claimproc/paysplit/appointment edits, two bulk edits
   of many rows in one second, a few deletes); see DAY;
5. the nightly ``etl run --jobs N`` (copy, load, the configured delete detection, transform), split into
   copy + load + deletes and transform by the run histories;
6. a no-change ``etl run``; 7. ``etl verify`` (it must find zero differences, or the benchmark fails).

The writer-wait probe: during the initial sync and the nightly, one thread per big table (at least
200,000 rows at scale 1.0) sends a one-row UPDATE every 100 ms (sql_templates/mysql/bench_clinic/
probe_update: it takes the table's write lock like the front desk's edits, but leaves the row as it was)
and records how long each waited; the same writer runs alone for a few seconds first, with no ETL.

The targets of issue 10 are for scale 1.0 on this machine; at other scales they are printed for reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import yaml

from etl import PROJECT_ROOT
from etl.tools.bench import Bench, Measure, Sample, _fix, _num, _text, machine
from etl.db import fetch_all, fetch_one
from etl.dialects import mysql, postgres
from etl.dialects.mysql import connect as mysql_connect
from etl.dialects.postgres import connect as pg_connect
from etl.render import Ident, render
from etl.settings import Settings

#: Rows of the fact sheet (scale 1.0).
CLINIC_ROWS = 18_807_284
DEFAULT_SCALE = 0.02
#: The simulated day changes this share of all rows.
DAY_SHARE = 0.005
#: (table, action, share of the day's changes). insert: copies of the newest rows, new keys; update: rows
#: spread over the table, a few hundred per statement; bulk: one statement, one second; delete: spread.
DAY = (
    ("securitylog", "insert", 0.25), ("securityloghash", "insert", 0.25),
    ("procedurelog", "insert", 0.05), ("procedurelog", "update", 0.08), ("procedurelog", "bulk", 0.03),
    ("procedurelog", "delete", 0.005),
    ("claimproc", "update", 0.06), ("claimproc", "bulk", 0.04), ("claimproc", "insert", 0.03),
    ("paysplit", "update", 0.05), ("paysplit", "insert", 0.03), ("paysplit", "delete", 0.005),
    ("appointment", "update", 0.05), ("appointment", "insert", 0.01), ("appointment", "delete", 0.005),
    ("commlog", "insert", 0.03), ("commlog", "update", 0.01), ("patient", "update", 0.02),
    ("payment", "insert", 0.01), ("payment", "update", 0.01), ("sheetfield", "insert", 0.03),
)
UPDATE_ROWS_PER_STATEMENT = 500
INSERT_ROWS_PER_STATEMENT = 5_000
#: The probe writes to the tables of at least this many rows in the fact sheet, every PROBE_INTERVAL seconds.
PROBE_MIN_ROWS = 200_000
PROBE_INTERVAL = 0.1
PROBE_BASELINE_SECONDS = 5.0
#: The longest table runs (phase, table) reported per step.
SLOWEST = 8
#: Entry and edit times OpenDental writes itself: the simulated day sets them to the server's time.
NOW_NAMES = ("edit", "tstamp", "entry", "created", "logdatetime")

TARGETS = {  # measure -> (kind, threshold, text): issue 10, at scale 1.0
    "initial_sync": ("ratio_max", 1.25, "<= 1.25 x the summed pipe time"),
    "nightly_phases": ("seconds_max", 30.0, "copy + load + deletes < 30 s"),
    "nightly_transform": ("seconds_max", 60.0, "transform < 60 s"),
    "no_change": ("seconds_max", 8.0, "no-change pass < 8 s"),
    "verify": ("seconds_max", 300.0, "verify < 5 min"),
}
WRITER_WAIT_TARGET = 0.5
RSS_LIMIT_MB = 300


# ---------------------------------------------------------------- the writer-wait probe

@dataclass
class ProbeTable:
    table: str
    key: str
    lo: int
    hi: int
    waits: list[float] = field(default_factory=list)
    worst_at: float = 0.0   # seconds after the window started


class WriterProbe:
    """One thread per table, each a one-row UPDATE every PROBE_INTERVAL s on its own connection."""

    def __init__(self, settings: Settings, tables: list[ProbeTable], seed: int):
        self.settings, self.tables, self.seed = settings, tables, seed
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.started = 0.0

    def __enter__(self) -> "WriterProbe":
        self.tables = [replace(t, waits=[], worst_at=0.0) for t in self.tables]  # this window's waits only
        self.started = time.perf_counter()
        for index, table in enumerate(self.tables):
            thread = threading.Thread(target=self._write, args=(table, random.Random(self.seed + index)),
                                      name=f"probe-{table.table}", daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _write(self, table: ProbeTable, rng: random.Random) -> None:
        try:
            conn = mysql_connect(self.settings.source_url, role="probe")
        except Exception as exc:  # recorded, reported; the benchmark goes on
            self.errors.append(f"{table.table}: {exc}")
            return
        database = Ident(self.settings.source_url.database)
        sql, _ = render("mysql/bench_clinic/probe_update", database=database, table=Ident(table.table),
                        key=Ident(table.key)).to_dbapi({"key": 0})
        try:
            tick = time.perf_counter()
            while not self.stop.is_set():
                started = time.perf_counter()
                with conn.cursor() as cur:
                    cur.execute(sql, {"key": rng.randint(table.lo, table.hi)})
                conn.commit()
                wait = time.perf_counter() - started
                if not table.waits or wait > max(table.waits):
                    table.worst_at = started - self.started
                table.waits.append(wait)
                tick += PROBE_INTERVAL
                now = time.perf_counter()
                if tick < now:  # a long wait: skip the ticks it covered
                    tick = now
                self.stop.wait(tick - now)
        except Exception as exc:
            self.errors.append(f"{table.table}: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def summary(self) -> dict[str, Any]:
        per_table = {}
        for t in self.tables:
            if t.waits:
                per_table[t.table] = {"writes": len(t.waits), "max_s": max(t.waits),
                                      "median_s": statistics.median(t.waits), "worst_at_s": t.worst_at}
        worst = max(per_table.items(), key=lambda kv: kv[1]["max_s"], default=(None, None))
        return {"seconds": time.perf_counter() - self.started, "tables": per_table,
                "max_s": worst[1]["max_s"] if worst[1] else None, "worst_table": worst[0], "errors": self.errors}


# ---------------------------------------------------------------- the benchmark

class ClinicBench(Bench):
    def __init__(self, base: Settings, *, scale: float, runs: int, seed: int, jobs: int, keep: bool, quiet: bool,
                 skip: set[str], probe_baseline: float):
        super().__init__(base, rows=0, scale=scale, runs=runs, seed=seed, keep=keep, quiet=quiet)
        self.settings = replace(self.settings, tables_path=self.workdir / "tables.yml")
        self.project = self.workdir / "dbt"
        shutil.copytree(PROJECT_ROOT / "dbt", self.project,
                        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "generated"))
        self.jobs, self.skip, self.probe_baseline = jobs, skip, probe_baseline
        self.steps: dict[str, Measure] = {}
        self.extra: dict[str, list[dict[str, Any]]] = {}
        self.probes: dict[str, list[dict[str, Any]]] = {}
        self.counts: dict[str, int] = {}

    def env(self, *, separate: bool = False) -> dict[str, str]:
        env = super().env(separate=separate)
        env["ETL_DBT_PROJECT_DIR"] = str(self.project)
        env["DBT_TARGET_PATH"] = str(self.workdir / "dbt-target")
        env["DBT_LOG_PATH"] = str(self.workdir / "dbt-logs")
        return env

    def step(self, name: str, label: str, baseline: str | None = None) -> Measure:
        if name not in self.steps:
            self.steps[name] = Measure(name, label, baseline)
        return self.steps[name]

    def note(self, name: str, value: dict[str, Any]) -> None:
        self.extra.setdefault(name, []).append(value)

    # ---- the source -------------------------------------------------------------------------------------
    def build(self) -> None:
        from etl.tools.demo import build_demo_source

        self.say(f"building the clinic source {self.names['source']} at scale {self.scale} "
                 f"(~{round(CLINIC_ROWS * self.scale):,} rows, 93 tables, --jobs {self.jobs})...")
        started = time.perf_counter()
        self.counts = build_demo_source(self.settings.source_url, scale=self.scale, seed=self.seed, clinic=True,
                                        jobs=self.jobs)
        self.setup["build_source_s"] = time.perf_counter() - started
        self.setup["source_rows"] = sum(self.counts.values())

    def fresh_targets(self) -> None:
        conn = self.mysql()
        try:
            with conn.cursor() as cur:
                cur.execute(render("mysql/demo/drop_database", database=Ident(self.names["replica"])).to_dbapi({})[0])
        finally:
            conn.close()
        admin = pg_connect(self.settings.analytics_url, database="postgres")
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(render("postgres/bench/drop_database", database=Ident(self.names["analytics"])).plain())
        finally:
            admin.close()
        for path in (self.settings.tables_path, self.project / "models" / "staging" / "generated"):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # ---- histories ----------------------------------------------------------------------------------------
    def phases_since(self, mark: tuple[int, int]) -> dict[str, dict[str, Any]]:
        """Per phase (copy, load, reconcile, transform): runs, rows read and written, and the time span."""
        rep = self.mysql(self.names["replica"])
        pg = pg_connect(self.settings.analytics_url)
        try:
            rows = [("replica",) + tuple(r) for r in fetch_all(rep, render("mysql/bench_clinic/history_phases"),
                                                                {"after": mark[0]})]
            rows += [("raw",) + tuple(r) for r in fetch_all(pg, render("postgres/bench_clinic/history_phases",
                                                                       schema=Ident(self.settings.raw_schema)),
                                                             {"after": mark[1]})]
            top = {"top": SLOWEST}
            slowest = [("replica",) + tuple(r) for r in fetch_all(rep, render("mysql/bench_clinic/history_slowest"),
                                                                   {"after": mark[0], **top})]
            slowest += [("raw",) + tuple(r) for r in fetch_all(pg, render("postgres/bench_clinic/history_slowest",
                                                                          schema=Ident(self.settings.raw_schema)),
                                                                {"after": mark[1], **top})]
        finally:
            rep.close()
            pg.close()
        self.last_slowest = [
            {"phase": _text(phase) + (" (replica)" if side == "replica" and _text(phase) == "reconcile" else ""),
             "table": _text(table), "seconds": float(_text(seconds)), "rows_written": int(written or 0)}
            for side, phase, table, seconds, written in slowest if seconds is not None]
        self.last_slowest.sort(key=lambda r: -r["seconds"])
        del self.last_slowest[SLOWEST:]
        out: dict[str, dict[str, Any]] = {}
        for side, phase, runs, read, written, first, last in rows:
            name = _text(phase) if side == "raw" or _text(phase) != "reconcile" else "reconcile_replica"
            first, last = _moment(first), _moment(last)
            span = (last - first).total_seconds() if first is not None and last is not None else None
            out[name] = {"runs": int(runs), "rows_read": int(read or 0), "rows_written": int(written or 0),
                         "span_s": span}
        return out

    def timed(self, name: str, label: str, *args: str, baseline: str | None = None,
              probe: list[ProbeTable] | None = None) -> dict[str, dict[str, Any]]:
        mark = self.history_mark()
        if probe is not None:
            with WriterProbe(self.settings, probe, self.seed) as writer:
                seconds, peak = self.run_etl(*args)
            self.probes.setdefault(name, []).append(writer.summary())
        else:
            seconds, peak = self.run_etl(*args)
        phases = self.phases_since(mark)
        moved = sum(p["rows_written"] for k, p in phases.items() if k != "transform")
        self.step(name, label, baseline).samples.append(Sample(seconds, moved, peak))
        self.note(name, {"seconds": seconds, "peak_mb": peak, "phases": phases, "slowest": self.last_slowest})
        return phases

    # ---- the steps ----------------------------------------------------------------------------------------
    def probe_tables(self) -> list[ProbeTable]:
        from etl.tools.demo import clinic_tables

        config = yaml.safe_load(self.settings.tables_path.read_text(encoding="utf-8"))["tables"]
        facts = clinic_tables()
        chosen = []
        conn = self.mysql(self.names["source"])
        try:
            for name, rows in sorted(self.counts.items(), key=lambda kv: -kv[1]):
                key = config.get(name, {}).get("primary_key")
                if facts[name].estimated_rows < PROBE_MIN_ROWS or not isinstance(key, str):
                    continue
                lo, hi = fetch_one(conn, render("mysql/bench_clinic/key_range", database=Ident(self.names["source"]),
                                                table=Ident(name), key=Ident(key)))
                chosen.append(ProbeTable(name, key, int(lo), int(hi)))
        finally:
            conn.close()
        return chosen

    def writer_baseline(self) -> None:
        if "probe" in self.skip or self.probe_baseline <= 0:
            return
        tables = self.probe_tables()
        self.say(f"  writer probe alone for {self.probe_baseline:.0f} s ({len(tables)} tables)...")
        with WriterProbe(self.settings, tables, self.seed) as writer:
            time.sleep(self.probe_baseline)
        self.probes.setdefault("no_etl", []).append(writer.summary())

    def pipe_all(self) -> Sample:
        """mariadb --batch | psql COPY of every configured table, one after the other (the load's own SELECT)."""
        schema = Ident(self.settings.raw_schema)
        config = yaml.safe_load(self.settings.tables_path.read_text(encoding="utf-8"))["tables"]
        total_s, total_rows, per_table = 0.0, 0, {}
        rep = self.mysql(self.names["replica"])
        pg = pg_connect(self.settings.analytics_url)
        pg.autocommit = True
        try:
            for name in sorted(config):
                columns = postgres.map_table(mysql.reflect_table(rep, self.names["replica"], name)).columns
                target = Ident(f"{name}__bench_pipe")
                with pg.cursor() as cur:
                    cur.execute(render("postgres/bench/drop_table", schema=schema, table=target).plain())
                    cur.execute(render("postgres/bench/create_like", schema=schema, target=target,
                                       table=Ident(name)).plain())
                select = render("mysql/bench/pipe_select", columns=columns, database=Ident(self.names["replica"]),
                                table=Ident(name)).plain()
                copy = render("postgres/copy_from_stdin", schema=schema, table=target,
                              columns=tuple(c.name for c in columns)).plain()
                started = time.perf_counter()
                producer = self.mysql_cli(select, stdout=subprocess.PIPE)
                consumer = self.psql_cli(copy, stdin=producer.stdout)
                producer.stdout.close()
                if consumer.wait() != 0 or producer.wait() != 0:
                    raise SystemExit(f"the mariadb | psql pipe failed for {name}")
                seconds = time.perf_counter() - started
                rows = int(fetch_one(pg, render("postgres/bench/count_rows", schema=schema, table=target))[0])
                with pg.cursor() as cur:
                    cur.execute(render("postgres/bench/drop_table", schema=schema, table=target).plain())
                total_s += seconds
                total_rows += rows
                per_table[name] = round(seconds, 3)
        finally:
            rep.close()
            pg.close()
        self.note("pipe", {"per_table_s": per_table})
        return Sample(total_s, total_rows)

    def clinic_day(self) -> dict[str, dict[str, int]]:
        """~DAY_SHARE of all rows changed at the source in DAY's proportions; rows per table and action."""
        config = yaml.safe_load(self.settings.tables_path.read_text(encoding="utf-8"))["tables"]
        budget = DAY_SHARE * sum(self.counts.values())
        total_share = sum(share for _, _, share in DAY)
        database = Ident(self.names["source"])
        done: dict[str, dict[str, int]] = {}
        conn = self.mysql(self.names["source"])
        try:
            with conn.cursor() as cur:
                cur.execute(render("mysql/bench_clinic/session_local_time").plain())
                cur.execute(render("mysql/demo/session_fill").plain())
            for table, action, share in DAY:
                entry = config.get(table)
                schema = mysql.reflect_table(conn, self.names["source"], table)
                if entry is None or schema is None or len(schema.primary_key) != 1:
                    continue
                key = schema.primary_key[0]
                n = max(1, round(budget * share / total_share))
                lo, hi = (int(v) for v in fetch_one(conn, render("mysql/bench_clinic/key_range", database=database,
                                                                 table=Ident(table), key=key)))
                incremental = set(entry.get("incremental_columns") or [])
                now_columns = tuple(c.name for c in schema.columns
                                    if c.data_type in ("datetime", "timestamp") and "on update" not in c.extra
                                    and (c.name in incremental or any(w in c.name.lower() for w in NOW_NAMES)))
                ctx = dict(database=database, table=Ident(table), key=key)
                changed = 0
                if action == "insert":
                    if "auto_increment" not in schema.column(key).extra:
                        continue
                    stamps = tuple(c.name for c in schema.columns if "on update" in c.extra
                                   or (c.default or "").lower().startswith("current_timestamp"))
                    columns = tuple(c.name for c in schema.columns if c.name != key)
                    statement = render("mysql/bench_clinic/day_insert", columns=columns, stamp_columns=stamps,
                                       now_columns=now_columns, **ctx)
                    start = max(lo, hi - n + 1)
                    while start <= hi:
                        end = min(hi, start + INSERT_ROWS_PER_STATEMENT - 1)
                        changed += self._execute(conn, statement, {"lo": start, "hi": end})
                        start = end + 1
                else:
                    touch = next((c.name for c in schema.columns if c.name != key and c.data_type in
                                  ("double", "float", "int", "smallint", "tinyint") and not c.unsigned), None)
                    if action != "delete" and touch is None:
                        continue
                    modulus = max(1, (hi - lo + 1) // n)
                    remainder = random.Random(f"{self.seed}/{table}/{action}/{len(done)}").randrange(modulus)
                    if action == "delete":
                        statement = render("mysql/bench_clinic/day_delete", **ctx)
                    else:
                        statement = render("mysql/bench_clinic/day_update", touch=Ident(touch),
                                           now_columns=tuple(c for c in now_columns if c in incremental), **ctx)
                    span = (hi - lo + 1) if action == "bulk" else UPDATE_ROWS_PER_STATEMENT * modulus
                    start = lo
                    while start <= hi:
                        end = min(hi, start + span - 1)
                        changed += self._execute(conn, statement, {"lo": start, "hi": end, "modulus": modulus,
                                                                   "remainder": remainder})
                        start = end + 1
                done.setdefault(table, {})[action] = done.get(table, {}).get(action, 0) + changed
        finally:
            conn.close()
        return done

    def wait_for_the_horizon(self, timeout: float = 600.0) -> None:
        """Until no write transaction older than the day's end is open on the server (see open_writers),
        then past the day's last second: the nightly's horizon then covers every edit of the day."""
        conn = self.mysql(self.names["source"])
        try:
            (moment,) = fetch_one(conn, render("mysql/bench_clinic/server_now"))
            deadline = time.monotonic() + timeout
            while int(fetch_one(conn, render("mysql/bench_clinic/open_writers"), {"moment": _text(moment)})[0]):
                if time.monotonic() > deadline:
                    raise SystemExit(f"a write transaction open since before {_text(moment)} is still open after "
                                     f"{timeout:.0f} s: the nightly's horizon could not cover the simulated day")
                time.sleep(0.5)
        finally:
            conn.close()
        time.sleep(1.1)

    @staticmethod
    def _execute(conn, statement, params) -> int:
        with conn.cursor() as cur:
            sql, values = statement.to_dbapi(params)
            cur.execute(sql, values)
            rows = cur.rowcount
        conn.commit()
        return max(rows, 0)

    def one_round(self, index: int) -> None:
        self.say(f"run {index + 1} of {self.runs}: fresh replica and analytics databases, discover, dbt-sources...")
        self.fresh_targets()
        seconds, peak = self.run_etl("discover", "--no-diff")
        self.step("discover", "etl discover (93 tables)").samples.append(Sample(seconds, len(self.counts), peak))
        seconds, peak = self.run_etl("dbt-sources")
        self.step("dbt_sources", "etl dbt-sources").samples.append(Sample(seconds, len(self.counts), peak))
        self.run_etl("migrate")
        probe = None if "probe" in self.skip else self.probe_tables()
        if index == 0:
            self.writer_baseline()

        self.say(f"  initial sync: etl copy --jobs {self.jobs}, etl load --jobs {self.jobs}...")
        jobs = ("--jobs", str(self.jobs))
        mark = self.history_mark()
        if probe is not None:
            with WriterProbe(self.settings, probe, self.seed) as writer:
                copy_s, copy_mb = self.run_etl("copy", *jobs)
                load_s, load_mb = self.run_etl("load", *jobs)
            self.probes.setdefault("initial_sync", []).append(writer.summary())
        else:
            copy_s, copy_mb = self.run_etl("copy", *jobs)
            load_s, load_mb = self.run_etl("load", *jobs)
        phases = self.phases_since(mark)
        copied, loaded = phases.get("copy", {}).get("rows_written", 0), phases.get("load", {}).get("rows_written", 0)
        self.step("initial_copy", f"initial etl copy --jobs {self.jobs}").samples.append(Sample(copy_s, copied, copy_mb))
        self.step("initial_load", f"initial etl load --jobs {self.jobs} (+ reconcile)").samples.append(
            Sample(load_s, loaded, load_mb))
        self.step("initial_sync", "initial sync: copy + load", "pipe").samples.append(
            Sample(copy_s + load_s, loaded, max(copy_mb, load_mb)))
        self.note("initial_sync", {"phases": phases, "slowest": self.last_slowest})
        if "transform" not in self.skip:
            self.say("  initial transform (every staging model)...")
            self.timed("initial_transform", "initial etl transform (all models)", "transform")
        if "pipe" not in self.skip:
            self.say("  baseline: mariadb | psql COPY, every table...")
            self.step("pipe", "pipe mariadb | psql COPY, summed (baseline)").samples.append(self.pipe_all())

        self.say("  a clinic day at the source...")
        started = time.perf_counter()
        day = self.clinic_day()
        changed = sum(sum(actions.values()) for actions in day.values())
        self.step("clinic_day", "simulated clinic day (source writes)").samples.append(
            Sample(time.perf_counter() - started, changed))
        self.note("clinic_day", {"rows": day})
        self.wait_for_the_horizon()

        self.say(f"  the nightly etl run --jobs {self.jobs}...")
        nightly = ("copy", *jobs) if "transform" in self.skip else ("run", *jobs)
        if "transform" in self.skip:
            self.timed("nightly", f"nightly etl copy --jobs {self.jobs}", *nightly, probe=probe)
            self.timed("nightly_load", f"nightly etl load --jobs {self.jobs}", "load", *jobs, probe=probe)
            total = self.steps["nightly"].samples[-1].seconds + self.steps["nightly_load"].samples[-1].seconds
            transform_s = 0.0
            self.steps["nightly"].samples[-1].rows += self.steps["nightly_load"].samples[-1].rows
        else:
            phases = self.timed("nightly", f"nightly etl run --jobs {self.jobs}", *nightly, probe=probe)
            total = self.steps["nightly"].samples[-1].seconds
            transform_s = phases.get("transform", {}).get("span_s") or 0.0
        peak = self.steps["nightly"].samples[-1].peak_mb
        rows = self.steps["nightly"].samples[-1].rows
        self.step("nightly_phases", "  of which copy + load + deletes").samples.append(
            Sample(total - transform_s, rows, peak))
        if "transform" not in self.skip:
            self.step("nightly_transform", "  of which transform (dbt)").samples.append(Sample(transform_s, 0, peak))

        self.say("  a no-change run, then etl verify...")
        if "transform" in self.skip:
            copy_s, copy_mb = self.run_etl("copy", *jobs)
            load_s, load_mb = self.run_etl("load", *jobs)
            self.step("no_change", "no-change etl copy + etl load").samples.append(
                Sample(copy_s + load_s, 0, max(copy_mb, load_mb)))
        else:
            self.timed("no_change", "no-change etl run", "run", *jobs)
        if "verify" not in self.skip:
            seconds, peak = self.run_etl("verify", "--json")  # exit 1 (drift) stops the benchmark there
            report = json.loads(_json_tail(self.workdir / "etl.out"))
            self.step("verify", "etl verify (every table)").samples.append(
                Sample(seconds, int(report.get("differing_rows", 0)), peak))
            if not report.get("ok") or report.get("differing_rows"):
                raise SystemExit(f"etl verify found differences after the nightly: {report.get('differing_rows')} rows")

    # ---- the report ---------------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        steps = {name: m.summary() for name, m in self.steps.items()}
        for summary in steps.values():
            base = steps.get(summary["baseline"]) if summary["baseline"] else None
            summary["ratio"] = (summary["seconds"] / base["seconds"]
                                if base and base["seconds"] and summary["seconds"] else None)
        targets = []
        for name, (kind, threshold, text) in TARGETS.items():
            s = steps.get(name)
            if s is None:
                continue
            value = s["ratio"] if kind == "ratio_max" else s["seconds"]
            if value is None:  # its baseline was skipped
                continue
            targets.append({"measure": name, "target": text, "value": value,
                            "met": value is not None and value <= threshold})
        probes = {name: _worst(samples) for name, samples in self.probes.items()}
        for name, probe in probes.items():
            if name != "no_etl" and probe.get("max_s") is not None:
                targets.append({"measure": f"writer wait, {name}", "target": f"<= {WRITER_WAIT_TARGET} s (item 5)",
                                "value": probe["max_s"], "met": probe["max_s"] <= WRITER_WAIT_TARGET})
        for name, s in steps.items():
            if s["peak_mb"] is not None:
                targets.append({"measure": name, "target": f"peak RSS < {RSS_LIMIT_MB} MB", "value": s["peak_mb"],
                                "met": s["peak_mb"] < RSS_LIMIT_MB})
        return {"machine": machine(self.settings), "scale": self.scale, "runs": self.runs, "jobs": self.jobs,
                "tables": len(self.counts), "rows": sum(self.counts.values()), "setup": self.setup,
                "steps": steps, "details": self.extra, "writer_waits": probes, "targets": targets}


def _moment(value: Any):
    """A run-history time: a datetime from PostgreSQL, text from the benchmark's raw-text MySQL sessions."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(_text(value))


def _json_tail(path: Path) -> str:
    """The JSON document `etl verify --json` printed (its log lines go to the same file, before it, and its
    table on stderr, after it): the document alone."""
    text = path.read_text(errors="replace")
    start = text.find("\n{")
    text = text[start + 1:] if start >= 0 else text[text.find("{"):]
    _, end = json.JSONDecoder().raw_decode(text)
    return text[:end]


def _worst(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Of several runs' probe summaries, the one with the median longest wait (its tables kept)."""
    ranked = sorted((s for s in samples if s.get("max_s") is not None), key=lambda s: s["max_s"])
    if not ranked:
        return samples[-1] if samples else {}
    return ranked[(len(ranked) - 1) // 2]


def format_report(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"etl bench-clinic: {report['tables']} tables, {report['rows']:,} rows (scale {report['scale']}), "
             f"--jobs {report['jobs']}, median of {report['runs']} run(s)",
             f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB; {m['mysql']}; {m['postgres']}",
             "", f"{'step':<46} {'seconds':>9} {'rows':>11} {'peak MB':>8} {'ratio':>6}"]
    for s in report["steps"].values():
        lines.append(f"{s['label'][:46]:<46} {_fix(s['seconds'], 2):>9} {_num(s['rows']):>11} "
                     f"{_fix(s['peak_mb'], 0):>8} {_fix(s['ratio'], 2):>6}")
    lines += ["", "ratio: against the summed pipe (initial sync). rows: rows written by copy, load and reconcile "
              "(full_table lookups are rewritten every run), changed (clinic day) or differing (verify)."]
    phased = [(name, runs[-1]["phases"]) for name, runs in report["details"].items() if runs and "phases" in runs[-1]]
    if phased:
        lines += ["", "per phase (last run; span from the run histories): runs, rows read / written, seconds"]
        for name, phases in phased:
            parts = [f"{phase} {p['runs']}x {p['rows_read']:,}/{p['rows_written']:,} {_fix(p['span_s'], 1)} s"
                     for phase, p in sorted(phases.items())]
            lines.append(f"  {name:<18} " + "; ".join(parts))
        lines += ["", f"the longest table runs of each step (phase table seconds; last run):"]
        for name, runs in report["details"].items():
            slowest = runs[-1].get("slowest") if runs else None
            if slowest:
                lines.append(f"  {name:<18} " + "; ".join(f"{r['phase']} {r['table']} {r['seconds']:.1f}"
                                                          for r in slowest))
    if report["writer_waits"]:
        lines += ["", "writer wait (one-row UPDATE every 100 ms per big table): longest, the table, when"]
        for name, probe in report["writer_waits"].items():
            if probe.get("max_s") is None:
                continue
            worst = probe["tables"].get(probe["worst_table"], {})
            medians = [t["median_s"] for t in probe["tables"].values()]
            lines.append(f"  {name:<16} {probe['max_s']:8.3f} s  {probe['worst_table']:<16} at "
                         f"{worst.get('worst_at_s', 0):7.1f} s; median of the tables' medians "
                         f"{statistics.median(medians):.4f} s; {sum(t['writes'] for t in probe['tables'].values()):,} "
                         f"writes" + (f"; errors: {probe['errors']}" if probe.get("errors") else ""))
    lines += ["", "targets (issue 10, for scale 1.0):"]
    for t in report["targets"]:
        value = t["value"]
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"  {'ok  ' if t['met'] else 'MISS'} {t['measure']:<28} {t['target']:<34} {shown}")
    lines += ["", "setup: " + ", ".join(f"{k} {v:,.1f}" for k, v in report["setup"].items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.tools.bench_clinic", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                        help=f"fraction of the clinic's 18.8M rows (default {DEFAULT_SCALE}; 1.0 for the real figures)")
    parser.add_argument("--runs", type=int, default=1, help="median of this many runs of each step (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs of the sync and the nightly (default 2)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--probe-baseline", type=float, default=PROBE_BASELINE_SECONDS, metavar="SECONDS",
                        help=f"how long the writer probe runs alone first (default {PROBE_BASELINE_SECONDS:.0f})")
    for what, text in (("pipe", "the mariadb | psql baseline"), ("transform", "dbt (initial transform; the "
                       "nightly becomes etl copy + etl load)"), ("verify", "etl verify"),
                       ("probe", "the writer-wait probe")):
        parser.add_argument(f"--skip-{what}", action="store_true", help=f"skip {text}")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's databases")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 5:
        parser.error("--scale must be above 0 and at most 5")
    for tool in ("mariadb", "psql"):
        if shutil.which(tool) is None and not args.skip_pipe:
            print(f"error: the baseline needs the `{tool}` client on PATH (or --skip-pipe)", file=sys.stderr)
            return 2
    skip = {what for what in ("pipe", "transform", "verify", "probe") if getattr(args, f"skip_{what}")}
    bench = ClinicBench(Settings.load(), scale=args.scale, runs=max(1, args.runs), seed=args.seed,
                        jobs=max(1, args.jobs), keep=args.keep, quiet=args.quiet, skip=skip,
                        probe_baseline=args.probe_baseline)
    try:
        bench.build()
        for index in range(bench.runs):
            bench.one_round(index)
        report = bench.report()
    finally:
        bench.cleanup()
    print(json.dumps(report, indent=2, default=str) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
