# The README's two quick-start commands, `make demo` and `make test`, work on a fresh clone of a
# machine that has only Python (>= 3.11) and pip: uv is bootstrapped into .tools/ if missing,
# and everything else is installed from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --no-sync
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_HOME

BENCHMARKS := bench-rate-limit bench-quota-learning bench-memory bench-requests bench-throughput \
	bench-warehouse-writes bench-startup bench-metrics bench-scale bench-ui bench-wait-cpu \
	bench-adjustment bench-read bench-intervals bench-history

.PHONY: demo test test-fast test-unit test-integration lint ui simulator bench $(BENCHMARKS) clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

# --compile-bytecode: every Dagster step is a new process, and where PYTHONDONTWRITEBYTECODE is
# set (CI here) each one would compile Dagster from source again: seconds per step.
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --compile-bytecode
	@touch $@

demo: .venv/.synced  ## simulator + Dagster, both declared sources over 2026-01-16..20, a summary each
	$(RUN) fin-assets demo

# The suite waits far more than it computes (daemons, servers, sleeping clients), so it runs on
# PYTEST_WORKERS processes, the longest stories first (tests/conftest.py orders them by their
# `slow` mark; --maxschedchunk=1 hands each worker one test at a time). tests/setup.sh starts or
# installs what the tests need besides uv.lock (PostgreSQL, RabbitMQ, Prometheus), or says what.
# 3 processes on 2 cores: 8:13 against 8:35 for 4 (fresh clone, same tree, back to back); the
# waiting stories slow down under more CPU contention than they save. Again on 2026-12-07:
# 10:34 for 3, 10:30 for 4 with a timing test failed under the contention (same tree).
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --maxschedchunk=1 --durations=15

# The project's own modules compiled once: every Dagster run worker, step process, code server
# and daemon the suite starts imports them, and where PYTHONDONTWRITEBYTECODE is set (CI here)
# each one would compile them again (0.45 s of CPU per process, hundreds of processes).
COMPILE_PROJECT = $(RUN) python -m compileall -q fin_assets resources > /dev/null

test: .venv/.synced  ## every test: unit, integration, PostgreSQL, end to end (about 9-10 min on 2 cores)
	bash tests/setup.sh
	$(COMPILE_PROJECT)
	$(RUN) pytest $(PYTEST_PARALLEL)

test-fast: .venv/.synced  ## unit + integration without the slow stories (about 3 min on 2 cores)
	bash tests/setup.sh
	$(COMPILE_PROJECT)
	$(RUN) pytest $(PYTEST_PARALLEL) -m "not slow" tests/unit tests/integration

test-unit: .venv/.synced
	$(RUN) pytest tests/unit

test-integration: .venv/.synced
	$(RUN) pytest tests/integration

lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

# Every benchmark runs even when one misses its target; bench then exits 1 naming them.
bench: .venv/.synced  ## every benchmark; each prints a table and exits 1 on a missed target
	@failed=""; began=$$(date +%s); \
	for target in $(BENCHMARKS); do \
		echo "== make $$target"; \
		$(MAKE) --no-print-directory $$target || failed="$$failed $$target"; \
		echo; \
	done; \
	echo "== make bench: $$(( $$(date +%s) - began )) s"; \
	if [ -n "$$failed" ]; then echo "missed targets in:$$failed"; exit 1; fi; \
	echo "every target met"

# HOGS=2: that many processes spin on the CPU throughout (a busy host).
HOGS ?= 0
bench-rate-limit: .venv/.synced  ## shared quota vs fixed sleep vs retry-on-429 (about 2 min; HOGS=2: a busy host)
	$(RUN) python benchmarks/rate_limit.py --cpu-hogs $(HOGS)

bench-quota-learning: .venv/.synced  ## the quota learned from 6 server dialects, 1-8 processes (about 4 min; HOGS=2: a busy host)
	$(RUN) python benchmarks/quota_learning.py --cpu-hogs $(HOGS)

bench-memory: .venv/.synced  ## peak RSS of a 1-day vs a 30-day range backfill (about 2 min)
	$(RUN) python benchmarks/memory.py

bench-requests: .venv/.synced  ## requests per symbol-day, per provider, vs one per partition
	$(RUN) python benchmarks/requests_per_day.py

bench-throughput: .venv/.synced  ## raw snapshots -> core/bars rows/s, 1 day x 500 symbols
	$(RUN) python benchmarks/throughput.py

bench-warehouse-writes: .venv/.synced  ## replace_partition rows/s: Parquet; PostgreSQL COPY
	$(RUN) python benchmarks/warehouse_writes.py

bench-adjustment: .venv/.synced  ## factors, adjusted bars, total returns: 500 symbols x 10 years (about 30 s)
	$(RUN) python benchmarks/adjustment.py

bench-read: .venv/.synced  ## read_bars: a symbol-year and 500 symbols x 1 day, Parquet and PostgreSQL (about 1 min)
	$(RUN) python benchmarks/read.py

bench-intervals: .venv/.synced  ## a 30-day backfill with and without the 5m/15m/1h tables, best of 3 (about 4 min)
	$(RUN) python benchmarks/intervals.py

bench-history: .venv/.synced  ## a year x 20 symbols of 1-minute bars: Binance archive vs REST under its quota (about 9 min)
	$(RUN) python benchmarks/history.py

bench-startup: .venv/.synced  ## time to load the definitions vs import dagster
	$(RUN) python benchmarks/startup.py

bench-metrics: .venv/.synced  ## fin-assets metrics on 10,000 partitions: scrape time, exporter RSS
	$(RUN) python benchmarks/metrics_scrape.py

bench-scale: .venv/.synced  ## 1/30/180-day backfills: CLI, fin-assets backfill (SQLite, PostgreSQL), daemon vs 79139c2 (about 20 min)
	$(RUN) python benchmarks/scale.py

bench-wait-cpu: .venv/.synced  ## CPU of a backfill waiting 5 min for a lagging provider, vs 7cf6aba (about 6 min)
	$(RUN) python benchmarks/wait_cpu.py

# bench-ui keeps its instance (a year of materialized hourly partitions) here and reuses it.
BENCH_UI_HOME ?= $(if $(wildcard /dev/shm),/dev/shm,$(CURDIR)/.cache)/fin-assets-bench-ui-year

bench-ui: .venv/.synced  ## UI asset page + partition view over GraphQL, a year materialized (< 2 s each)
	$(RUN) python benchmarks/ui_year.py --home $(BENCH_UI_HOME)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

ui: .venv/.synced $(DAGSTER_HOME)/dagster.yaml  ## Dagster UI + daemon on http://127.0.0.1:3000
	$(RUN) dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

simulator: .venv/.synced  ## the market-data simulator on http://127.0.0.1:8765
	$(RUN) fin-assets simulator --port 8765 --declared-sources

clean:  ## remove generated data and the demo's Dagster home (keeps .venv)
	rm -rf data .dagster_home
