"""Runs inside a process whose AIRFLOW_HOME is a test's temporary folder (never ~/airflow): the tests start it
with `python -m tests.airflow_driver COMMAND ...` and read one JSON document from its last stdout line.

  setup ARGV_LISTS       `airflow ARGV` for each list of a JSON list of lists (db migrate, connections add...)
  graph [--discover]     the DAGs of the dags folder: import errors, and per DAG its tasks and their upstreams
                         (--discover: as if the CLI had `etl discover`)
  test DAG_ID[=CONF]...  dag.test() of each DAG in turn (CONF: JSON params), then every task instance's outcome
                         and return value (XCom), per DAG

Airflow is imported only here, in that process, so the test process never reads or writes an Airflow home.
"""

from __future__ import annotations

import json
import sys

MARK = "AIRFLOW_DRIVER_RESULT "


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag()


def setup(argv_lists: list[list[str]]) -> dict:
    """`airflow <argv>` for each list, in this one process (Airflow's own CLI commands: each started on its
    own costs seconds of imports); returns the pools then defined."""
    from airflow.cli import cli_parser
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    parser = cli_parser.get_parser()
    for argv in argv_lists:
        args = parser.parse_args(argv)
        args.func(args)
    with create_session() as session:
        return {"pools": {p.pool: p.slots for p in session.query(Pool)}}


def graph(pretend_discover: bool = False) -> dict:
    if pretend_discover:  # as if the CLI had `etl discover`: the hook's task appears
        import etl.airflow.dags

        etl.airflow.dags.cli_has_command = lambda name: True
    bag = _dagbag()
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "schedule": dag.schedule if isinstance(dag.schedule, (str, type(None))) else str(dag.schedule),
            "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "pool": t.pool,
                                  "trigger_rule": str(t.trigger_rule), "retries": t.retries,
                                  "mapped": t.get_closest_mapped_task_group() is not None}
                      for t in dag.tasks},
            "params": sorted(dag.params.keys()),
        }
    return {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}


def test(dag_ids: list[str]) -> dict:
    """dag.test() of each DAG in turn, in this one process (Airflow's in-process API starts once)."""
    bag = _dagbag()
    missing = [d for d in dag_ids if d.split("=", 1)[0] not in bag.dags]
    if missing:
        return {"error": f"no DAG {missing}", "import_errors": {k: str(v) for k, v in bag.import_errors.items()}}
    runs = {}
    for spec in dag_ids:
        dag_id, _, conf = spec.partition("=")
        runs[dag_id] = _test_one(bag.dags[dag_id], json.loads(conf) if conf else None)
    return runs


def _test_one(dag, conf: dict | None) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_id = dag.dag_id
    run = dag.test(run_conf=conf)
    tasks = []
    with create_session() as session:
        for ti in run.get_task_instances(session=session):
            value = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, task_ids=ti.task_id,
                                                       map_indexes=ti.map_index, key="return_value")).first()
            tasks.append({"task_id": ti.task_id, "map_index": ti.map_index,
                          "label": ti.rendered_map_index, "state": str(ti.state), "try_number": ti.try_number,
                          "xcom": XComModel.deserialize_value(value) if value is not None else None})
    return {"state": str(run.state), "tasks": tasks}


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "setup":
        result = setup(json.loads(rest[0]))
    else:
        result = graph("--discover" in rest) if command == "graph" else test(rest)
    print(MARK + json.dumps(result, default=str))
