"""The DAG factory: one DAG per clinic of clinics.yml, and a verify DAG per clinic on a schedule of its own.

A clinic's DAG (``opendental_<clinic>``)::

    preflight ──> copy_deletedobject ──> load_deletedobject ──> deletedobject_done ─┐
        │                                                                           │
        └────────────> table[T]: copy ──> load ──> delete_detection  (one per table) ┴─> tables_done ──> transform
    every task ──> failures (runs only when a task failed, and fails the run)

* ``preflight`` runs `etl --clinic C preflight`: the three databases answer, both tracking schemas are at
  head, tables.yml is valid against the live source. Its return value is the list of tables the ``table``
  group is mapped over (dynamic task mapping: tables.yml is read when the run starts, not when the DAG is
  parsed); the DAG params `tables` and `full` narrow the run and force a full refresh.
* OpenDental's deletion log goes first (`delete_detection: deletedobject` tables read it); when tables.yml
  has no `deletedobject` both tasks are skipped.
* Per table: `etl --clinic C copy T`, then `load T --no-reconcile`, then, for `delete_detection: reconcile`,
  `reconcile T` (skipped otherwise; it reads the source, so it takes a source slot, not a warehouse one). A table's task failing fails that table only: its later tasks don't run, the other
  tables go on (``deletedobject_done`` and ``tables_done`` wait for all, whatever their outcome), and its
  retry resumes from the watermark the failed attempt committed.
* ``transform`` runs `etl --clinic C transform`, which builds only the models of tables with new loads (a
  table whose copy or load failed has none), so it runs after the tables whatever their outcome, but never
  after a failed preflight.
* ``failures`` makes the run's state honest: without it, a failed table followed by a successful transform
  would leave the run green.

Pools: tasks that read the source (preflight, copy, reconcile, verify) take a slot of the source server's
pool, tasks that write the warehouse (load, transform) one of the warehouse's pool (`etl clinics
--airflow-pools`). Each task's log is its command's log; its return value (XCom) is the command's result:
rows read and written per table.

Hook for `etl discover --check` (a warning task, present when the CLI has `etl discover`): DISCOVER_CHECK below.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Connection, Param, TriggerRule, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from etl.airflow.command import CommandResult, run_etl
from etl.clinics import Clinic, ClinicsConfig, clinics_path, load_clinics

log = logging.getLogger("etl.airflow")

START_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
FEED = "deletedobject"
#: Mapped table tasks are labelled with their table in the UI (instead of a map index).
LABEL = "{{ etl_table }}"

# ---------------------------------------------------------------- hook: `etl discover --check`
# A clinic whose source has tables or columns its tables.yml does not cover (what an OpenDental upgrade
# does) gets a red `discover_check` task: a warning only, since nothing downstream waits on its success
# (tables_done runs whatever its outcome) and `failures` does not watch it, so the run itself stays green.
# The task appears by itself as soon as the CLI has a `discover` command; nothing else to wire.
DISCOVER_CHECK = ("discover", "--check")


def cli_has_command(name: str) -> bool:
    from etl.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # noqa: SLF001
    return name in commands.choices


# ---------------------------------------------------------------- the factory

def clinic_dags(path: str | Path | None = None) -> dict[str, DAG]:
    """Every clinic's DAG and verify DAG, by dag_id. `path`: clinics.yml (default: ETL_CLINICS)."""
    config = load_clinics(Path(path) if path is not None else clinics_path())
    dags: dict[str, DAG] = {}
    for clinic in config.clinics.values():
        dags[clinic.dag_id] = clinic_dag(config, clinic)
        dags[clinic.verify_dag_id] = verify_dag(config, clinic)
    return dags


def _default_args(clinic: Clinic) -> dict[str, Any]:
    return {"owner": "opendental-etl", "retries": clinic.retries,
            "retry_delay": dt.timedelta(minutes=clinic.retry_delay_minutes)}


def clinic_dag(config: ClinicsConfig, clinic: Clinic) -> DAG:
    source_pool, warehouse_pool = clinic.source_server.pool, clinic.warehouse.pool
    runner = _Runner(config, clinic)
    with DAG(
        dag_id=clinic.dag_id,
        description=f"OpenDental ETL of clinic {clinic.name}: copy, load, delete detection, transform",
        schedule=clinic.schedule,
        start_date=START_DATE,
        catchup=False,          # every run takes everything since the stored watermarks: nothing to catch up
        max_active_runs=1,
        default_args=_default_args(clinic),
        params={
            "full": Param(False, type="boolean", description="refresh in full, ignoring the stored watermarks"),
            "tables": Param([], type="array", items={"type": "string"},
                            description="only these configured tables (default: all)"),
        },
        tags=["opendental-etl", f"clinic:{clinic.name}"],
        doc_md=__doc__,
    ) as dag:

        @task(pool=source_pool)
        def preflight() -> list[dict[str, str]]:
            context = get_current_context()
            output = runner.run(["preflight", "--json"])
            configured = {t["table"]: t for t in output["tables"]}
            wanted = list(context["params"].get("tables") or [])
            unknown = [t for t in wanted if t not in configured]
            if unknown:
                raise AirflowFailException(f"param tables: not configured for clinic {clinic.name}: "
                                           f"{', '.join(unknown)}")
            chosen = [configured[t] for t in (wanted or configured)]
            context["ti"].xcom_push(key="feed", value=any(t["table"] == FEED for t in chosen))
            return [t for t in chosen if t["table"] != FEED]

        @task(pool=source_pool)
        def copy_deletedobject() -> dict[str, Any]:
            _skip_unless_feed()
            return runner.phase("copy", FEED)

        @task(pool=warehouse_pool)
        def load_deletedobject() -> dict[str, Any]:
            _skip_unless_feed()
            return runner.phase("load", FEED)

        @task_group(group_id="table")
        def table(spec: dict[str, str]):
            @task(pool=source_pool, map_index_template=LABEL)
            def copy(spec: dict[str, str]) -> dict[str, Any]:
                return runner.phase("copy", _labelled(spec))

            @task(pool=warehouse_pool, map_index_template=LABEL)
            def load(spec: dict[str, str]) -> dict[str, Any]:
                return runner.phase("load", _labelled(spec), "--no-reconcile")  # delete_detection does it

            @task(pool=source_pool, map_index_template=LABEL)
            def delete_detection(spec: dict[str, str]) -> dict[str, Any]:
                _labelled(spec)
                if spec["delete_detection"] != "reconcile":
                    raise AirflowSkipException(f"{spec['table']}: delete_detection {spec['delete_detection']}: "
                                               "nothing to do after the load")
                deleted = runner.run(["reconcile", spec["table"], "--json"])[spec["table"]]
                return {"table": spec["table"], "phase": "reconcile", "deleted_replica": deleted["replica"],
                        "deleted_raw": deleted["raw"]}

            copy(spec) >> load(spec) >> delete_detection(spec)

        @task(pool=warehouse_pool)
        def transform() -> list[dict[str, Any]]:
            tables = list(get_current_context()["params"].get("tables") or [])
            return [_summary(r) for r in runner.run(["transform", *tables, *runner.full(), "--json"])]

        @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
        def failures() -> None:
            raise AirflowFailException(f"clinic {clinic.name}: a task of this run failed (the red one(s)); "
                                       "the other tables ran, and its retry or the next run resumes it")

        checked = preflight()
        feed_done = _all_done("deletedobject_done")
        checked >> copy_deletedobject() >> load_deletedobject() >> feed_done
        tables = table.expand(spec=checked)
        [checked, feed_done] >> tables
        tables_done = _all_done("tables_done")
        tables >> tables_done
        transformed = transform()
        [checked, tables_done] >> transformed
        watched = [t for t in dag.tasks if t.task_id not in ("failures", "deletedobject_done", "tables_done")]
        watched >> failures()

        if cli_has_command(DISCOVER_CHECK[0]):
            @task(pool=source_pool, retries=0)
            def discover_check() -> Any:
                return runner.run(list(DISCOVER_CHECK), json_output=False, warning=True)

            checked >> discover_check() >> tables_done
    return dag


def verify_dag(config: ClinicsConfig, clinic: Clinic) -> DAG:
    runner = _Runner(config, clinic)
    with DAG(
        dag_id=clinic.verify_dag_id,
        description=f"OpenDental ETL of clinic {clinic.name}: compare source, replica and raw (etl verify)",
        schedule=clinic.verify_schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args={**_default_args(clinic), "retries": 0},  # drift is a finding, not a transient fault
        tags=["opendental-etl", f"clinic:{clinic.name}", "verify"],
        doc_md="`etl --clinic C verify`: row counts and chunked checksums of every table, source vs replica vs "
               "raw; fails on drift and lists the differing keys in the log. Rows changed at the source since "
               "the last run show as drift: schedule it when the practice is closed, after a run.",
    ) as dag:

        @task(pool=clinic.source_server.pool)
        def verify() -> dict[str, Any]:
            result = runner.execute(["verify", "--json"])  # its log: the per-table table of `etl verify`
            report = result.output if isinstance(result.output, dict) else None
            if result.returncode == 1 and report is not None:
                raise AirflowFailException(f"clinic {clinic.name}: drift in "
                                           f"{sum(t.get('status') not in ('ok', 'skipped') for t in report['tables'])}"
                                           f" table(s), {report.get('differing_rows')} row(s) differ")
            runner.check(result)
            return {"ok": report["ok"], "differing_rows": report["differing_rows"],
                    "tables": {t["table"]: t["status"] for t in report["tables"]}}

        verify()
    return dag


# ---------------------------------------------------------------- running a command from a task

class _Runner:
    """Runs one clinic's commands from its tasks (the clinic's Airflow connections passed to the command)."""

    def __init__(self, config: ClinicsConfig, clinic: Clinic):
        self.path = config.path
        self.clinic = clinic

    def connections(self) -> dict[str, str]:
        """The clinic's Airflow connections, resolved by Airflow (any secrets backend) and handed to the
        command in Airflow's own environment form (AIRFLOW_CONN_<ID>, JSON), which etl.clinics reads."""
        env = {}
        for ref in self.clinic.refs.values():
            if ref.kind == "airflow_connection":
                env[ref.variable] = Connection.get(ref.name).as_json()
        return env

    def full(self) -> list[str]:
        return ["--full"] if get_current_context()["params"].get("full") else []

    def execute(self, args: list[str]) -> CommandResult:
        return run_etl(self.clinic.name, args, clinics_path=self.path, env=self.connections(), logger=log)

    def check(self, result: CommandResult) -> None:
        if result.returncode == 0:
            return
        if result.returncode == 2:  # configuration or usage: a retry would fail the same way
            raise AirflowFailException(result.describe_failure() + " (configuration error: not retried)")
        raise AirflowException(result.describe_failure())

    def run(self, args: list[str], *, json_output: bool = True, warning: bool = False) -> Any:
        result = self.execute(args)
        if warning and result.returncode != 0:
            log.warning("%s", result.describe_failure())
        self.check(result)
        return result.output if json_output else result.returncode

    def phase(self, phase: str, table: str, *options: str) -> dict[str, Any]:
        """`etl --clinic C <phase> <table> --jobs 1 [--full] --json` -> that table's result."""
        output = self.run([phase, table, *options, "--jobs", "1", *self.full(), "--json"])
        return next(_summary(r) for r in output if r["phase"] == phase and r["table"] == table)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("table", "phase", "ok", "strategy", "rows_read", "rows_written", "seconds", "attempts", "error")
    return {k: result.get(k) for k in keys}


def _labelled(spec: dict[str, str]) -> str:
    get_current_context()["etl_table"] = spec["table"]  # rendered into LABEL
    return spec["table"]


def _skip_unless_feed() -> None:
    ti = get_current_context()["ti"]
    if not ti.xcom_pull(task_ids="preflight", key="feed"):
        raise AirflowSkipException(f"{FEED} is not configured (or not selected): no deletion log to copy first")


def _all_done(task_id: str):
    """A gate that opens when everything before it has finished, whatever the outcome."""

    @task(task_id=task_id, trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def gate() -> None:
        return None

    return gate()
