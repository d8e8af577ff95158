"""OpenDental ETL: one DAG per clinic of clinics.yml, and a weekly verify DAG per clinic.

Copy this file into your Airflow dags folder. clinics.yml is read from ETL_CLINICS (set it for the
scheduler's DAG processor and the workers alike), or give its path to clinic_dags(). See the README,
"Running many clinics on Airflow".
"""

from etl.airflow.dags import clinic_dags

globals().update(clinic_dags())
