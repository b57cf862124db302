# The two commands of the README: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo lint test clean bench bench-quick chaos chaos-sqlite

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Concord needs Python 3.11 or newer: run make with PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/concord demo

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two pytest workers (pytest-xdist): the suite waits on servers more than it computes, so two
# halve its wall time on a 2-core machine. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

# The slowest tests are listed at the end: CI must stay under 20 minutes on two cores (the
# fault-injection scenarios take about half of the suite's time).
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --durations=25

# Benchmarks (bench/, docs/performance.md): PostgreSQL and Redis from the same variables as the
# tests; results go to bench/results/. bench-quick runs each at a size of about a minute.
BENCH_ENV = CONCORD_TEST_DATABASE_URL=$${CONCORD_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
BENCHES := e2e_throughput latency intake lineage_writes lookup dashboard_load sla_keeper http_client

bench: $(STAMP)
	$(BENCH_ENV) $(BIN)/python -m bench.reconcile
	@for b in $(BENCHES); do echo "== bench.$$b"; $(BENCH_ENV) $(BIN)/python -m bench.$$b || exit 1; done

bench-quick: $(STAMP)
	$(BENCH_ENV) $(BIN)/python -m bench.reconcile --invoices 100000 --runs 2 --out bench/results/quick/reconcile.json
	@for b in $(BENCHES); do echo "== bench.$$b --quick"; $(BENCH_ENV) $(BIN)/python -m bench.$$b --quick --out bench/results/quick/$$b.json || exit 1; done

# The fault-injection suite at full size (CI runs a smaller CONCORD_CHAOS_EVENTS on both
# backends): PostgreSQL, the production backend, in 8 to 12 minutes; SQLite, the embedded
# default, in about 23 (docs/reliability.md, "Full size").
chaos: $(STAMP)
	CONCORD_CHAOS_EVENTS=3000 $(BIN)/pytest -q tests/chaos -k postgresql --timeout=1500 --durations=0

chaos-sqlite: $(STAMP)
	CONCORD_CHAOS_EVENTS=3000 $(BIN)/pytest -q tests/chaos -k sqlite --timeout=1500 --durations=0

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache concord.db concord.db-wal concord.db-shm
