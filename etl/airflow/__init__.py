"""Many clinics on Apache Airflow: one DAG per clinic of clinics.yml (etl.airflow.dags).

The only part of the package that imports Airflow (the `airflow` extra); the rest never does. Every task runs
an `etl --clinic NAME ...` command (etl.airflow.command), exactly what a person would run by hand.
"""
