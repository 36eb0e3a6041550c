# tickwork — the two commands of the quick start are `make demo` and `make test`.
# Both install what they need: a .venv with the project and its dev tools, Debian's
# chromium for the browser tests, and a running PostgreSQL for the cluster tests.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench bench-quick test-cluster deps system-deps clean screenshots

$(BIN)/python:
	$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "tickwork needs Python >= 3.11"'
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

deps: $(STAMP)

# Debian packages the tests use; installed only when missing (CI machines start fresh).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (browser tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	    >/dev/null 2>&1 || echo "WARNING: could not install chromium"; }
	@bash scripts/ensure-postgres.sh

demo: $(STAMP)
	$(BIN)/python -m tickwork demo

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/python -m mypy --strict src

pytest: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

# Cluster chaos test (bench/chaos.py): 4 instances on a throwaway PostgreSQL database,
# kills/pauses/disconnects, then the exactly-once invariants. Longer: CHAOS_SECONDS=1800.
CHAOS_SECONDS ?= 180
test-cluster: $(STAMP) system-deps
	$(BIN)/python bench/chaos.py --seconds $(CHAOS_SECONDS)

# Refresh the README's UI screenshots (the browser tests write them).
screenshots: $(STAMP) system-deps
	TICKWORK_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/service/test_browser.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
