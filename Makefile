# The README's two commands are `make demo` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-e2e test-systemd test-migration lint bench clean

$(STAMP): requirements.txt constraints.txt prh-ingest/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $(STAMP)

## Bake an example ingest project and warehouse into .scratch/ and run the flow on its sample data.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## The test suite but its slow sets (CI runs them all: .ci/run), on two xdist workers.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not systemd and not migration" -n 2 --dist worksteal --junitxml=.bench/reports/junit-test.xml

## The end-to-end tests: one live site (Prefect server, worker, git repos) built once, in one
## process (slow; CI runs it).
test-e2e: $(STAMP)
	$(BIN)/python -m pytest -m "e2e and not systemd and not migration" --junitxml=.bench/reports/junit-test-e2e.xml

## The slow tests that boot a real systemd in a container (root, systemd-nspawn; see BENCHMARKS.md).
test-systemd: $(STAMP)
	$(BIN)/python -m pytest -m systemd --junitxml=.bench/reports/junit-test-systemd.xml

## MIGRATING.md run as written on a real Prefect 2.10.15 server, SQLite and PostgreSQL (slow;
## the 2.10 venv is built once under ~/.cache from tests/migration/prefect-2.10-constraints.txt).
test-migration: $(STAMP)
	$(BIN)/python -m pytest -m migration --junitxml=.bench/reports/junit-test-migration.xml

lint: $(STAMP)
	$(BIN)/ruff check prh-ingest contract hooks warehouse-template/hooks tests scripts benchmarks

## Benchmarks: one run writes all of BENCHMARKS.md (at most 15 min on 2 cores). Never part of
## `make test`. The suites' times come from .bench/reports/junit-<target>.xml, which each
## test target writes (CI's run too).
## Bench-only dependencies (pandas, for the baseline) come from benchmarks/requirements.txt.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt -c constraints.txt
	$(BIN)/python -m benchmarks

clean:
	rm -rf .scratch .pytest_cache
