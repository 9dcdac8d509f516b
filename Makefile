# The two commands of the README: `make run` (the demo panel) and `make test` (the whole suite).
# Both call `make setup` first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODE_MODULES := node_modules
HOST ?= 127.0.0.1
PORT ?= 8000

# The test suite's services (installed and started by scripts/test-services.sh when missing).
TEST_DATABASE_URL ?= postgres://postgres:postgres@127.0.0.1:5432/vpspanel
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: setup run test lint format migrations clean

setup: $(VENV)/.installed $(NODE_MODULES)/.installed

$(VENV)/.installed: pyproject.toml scripts/system-packages.sh
	bash scripts/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# The consoles' browser libraries (noVNC, xterm.js), exactly as package-lock.json pins them; Django serves
# them from node_modules (STATICFILES_DIRS). No install scripts run.
$(NODE_MODULES)/.installed: package.json package-lock.json scripts/system-packages.sh
	bash scripts/system-packages.sh
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

run: setup
	HOST=$(HOST) PORT=$(PORT) $(PY) scripts/run_demo.py

# The suite runs in TEST_PROCESSES processes (pytest-xdist; each with its own test database and Redis
# database, tests/parallel.py): most of its time is spent waiting on guests, workers and services, not on
# CPU. Tests marked `alone` restart Postgres or libvirtd (or remove the default pool) under everyone's feet:
# tests/parallel.py leaves them (and the tests that boot the Debian guest under QEMU emulation) out of the
# first run, and `--alone` runs only them, by themselves
# (pytest's exit code 5 is "no test selected", when PYTEST_ARGS picks none of them).
TEST_PROCESSES ?= 3
TEST_ENV := DEBUG= DEMO= HTTPS=0 SECRET_KEY=test-only-secret-key DATABASE_URL=$(TEST_DATABASE_URL) \
	REDIS_URL=$(TEST_REDIS_URL)

test: setup
	bash scripts/test-services.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(PY) -m pytest -p tests.parallel -n $(TEST_PROCESSES) --dist worksteal $(PYTEST_ARGS)
	$(TEST_ENV) $(PY) -m pytest -p tests.parallel --alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrations: setup
	DEBUG=1 $(PY) manage.py makemigrations

clean:
	rm -rf $(VENV) $(NODE_MODULES) var .pytest_cache .ruff_cache

# `make bench`: the benchmarks of issue 7 (bench/run.py; sizes from BENCH_* variables). Prints the table and
# writes bench/results.json.
.PHONY: bench
bench: setup
	bash scripts/test-services.sh
	$(PY) -m bench.run
