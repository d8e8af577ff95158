# Two commands on a fresh machine: `make demo` (the main job on local defaults) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCALE  ?= 0.05

.PHONY: demo demo-clinic test test-unit test-integration install install-airflow services snapshots bench bench-clinic clean

$(BIN)/etl: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,dbt]"
	touch $@

install: $(BIN)/etl

# The optional Airflow extra (etl/airflow/, tests/integration/test_airflow.py); `make test` runs the Airflow
# tests when it is installed and skips them otherwise. .ci/run installs it.
$(VENV)/.airflow-installed: pyproject.toml $(BIN)/etl
	$(BIN)/pip install --quiet -e ".[dev,dbt,airflow]"
	touch $@

install-airflow: $(VENV)/.airflow-installed

services:
	@bash .ci/ensure-services

demo: install services
	$(BIN)/etl demo-data --scale $(SCALE)
	$(BIN)/etl migrate
	$(BIN)/etl check-config
	$(BIN)/etl init-tracking
	$(BIN)/etl run
	$(BIN)/etl status

# The whole fact sheet (93 tables) instead of the 12 demo tables: `etl discover` writes .clinic/tables.yml and
# `etl dbt-sources` the sources and staging models into a copy of the dbt project, .clinic/dbt (the committed
# tables.yml and dbt/ stay the 12-table demo's). SCALE=1.0 make demo-clinic: 18.8M rows.
CLINIC := $(CURDIR)/.clinic
demo-clinic: export ETL_TABLES := $(CLINIC)/tables.yml
demo-clinic: export ETL_DBT_PROJECT_DIR := $(CLINIC)/dbt
demo-clinic: install services
	rm -rf $(CLINIC)/dbt && mkdir -p $(CLINIC) && cp -r dbt $(CLINIC)/dbt
	rm -rf $(CLINIC)/dbt/target $(CLINIC)/dbt/logs $(CLINIC)/dbt/models/staging/generated
	$(BIN)/etl demo-data --fact-sheet --scale $(SCALE)
	$(BIN)/etl discover --no-diff
	$(BIN)/etl dbt-sources
	$(BIN)/etl migrate
	$(BIN)/etl check-config
	$(BIN)/etl init-tracking
	$(BIN)/etl run
	$(BIN)/etl status

test: install services
	$(BIN)/pytest -q

test-unit: install
	$(BIN)/pytest -q tests/unit

test-integration: install services
	$(BIN)/pytest -q tests/integration

# Regenerate the golden files of the rendered-SQL snapshot tests (review the diff before committing).
snapshots: install
	$(BIN)/python -m tests.snapshot_cases --update

# Performance benchmark (etl/tools/bench.py): its own uniquely named databases, dropped afterwards.
# make bench BENCH_ARGS="--runs 3 --json"   (also --rows 5000000, --jobs-sweep 1,2,4, --keep)
bench: install services
	$(BIN)/python -m etl.tools.bench $(BENCH_ARGS)

# The whole clinic end to end (etl/tools/bench_clinic.py): discover, initial sync, a simulated day, the nightly,
# a no-change run, verify, with the writer-wait probe; its own databases, dropped afterwards.
# make bench-clinic BENCH_ARGS="--scale 1.0 --json"   (also --runs 3, --jobs 2, --skip-pipe/transform/verify/probe)
bench-clinic: install services
	$(BIN)/python -m etl.tools.bench_clinic $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info $(CLINIC)
