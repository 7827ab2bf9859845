# The README's two commands are `make demo` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-systemd test-migration test-fast lint bench clean

$(STAMP): requirements.txt constraints.txt prh-ingest/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $(STAMP)

## Bake an example ingest project and warehouse into .scratch/ and run the flow on its sample data.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## The test suite, but the booted-systemd tests (CI runs both: .ci/run). Two xdist workers;
## the e2e tests stay together on one (tests/support/live_site_group.py).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not systemd and not migration" -n 2 --dist loadgroup

## The slow tests that boot a real systemd in a container (root, systemd-nspawn; see BENCHMARKS.md).
test-systemd: $(STAMP)
	$(BIN)/python -m pytest -m systemd

## MIGRATING.md run as written on a real Prefect 2.10.15 server, SQLite and PostgreSQL (slow;
## the 2.10 venv is built once under ~/.cache from tests/migration/prefect-2.10-constraints.txt).
test-migration: $(STAMP)
	$(BIN)/python -m pytest -m migration

## Everything but the live-server end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not systemd and not migration"

lint: $(STAMP)
	$(BIN)/ruff check prh-ingest contract hooks warehouse-template/hooks tests scripts benchmarks

## Benchmarks: one run writes all of BENCHMARKS.md (at most 15 min on 2 cores). Never part of
## `make test`. The suites' times come from .bench/reports/junit-<target>.xml, written by e.g.
## `make test PYTEST_ADDOPTS=--junitxml=$PWD/.bench/reports/junit-test.xml`.
## Bench-only dependencies (pandas, for the baseline) come from benchmarks/requirements.txt.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt -c constraints.txt
	$(BIN)/python -m benchmarks

clean:
	rm -rf .scratch .pytest_cache
