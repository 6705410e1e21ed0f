# Thin wrappers; each target bootstraps .venv from requirements.lock when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup generate check-generated lint test test-sqlite contract run demo bench bench-cutover clean

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)

generate: $(STAMP)
	$(BIN)/python scripts/codegen.py generate

check-generated: $(STAMP)
	$(BIN)/python scripts/codegen.py check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite: lint, drift check, then every test (PostgreSQL too when TEST_DATABASE_URL is set).
test: lint check-generated
	$(BIN)/python scripts/run_tests.py

contract: $(STAMP)
	$(BIN)/python -m scripts.contract

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis .schemathesis

# Both backends on loopback (TMA :8000, CRM :8001) with SQLite in ./data, until Ctrl-C.
run: $(STAMP)
	$(BIN)/python -m scripts.run_local

# Start both, play a scripted conversation through their APIs, print both databases, exit.
demo: $(STAMP)
	$(BIN)/python -m scripts.demo

# Delivery figures on this machine, each beside a baseline (DESIGN §8); not part of `make test`.
bench: $(STAMP)
	$(BIN)/python bench/run.py

# The legacy migration of an old TMA database of 1,000,000 messages on PostgreSQL (docs/cutover.md):
# time taken and the longest time writes were blocked. MESSAGES=N, TEST_DATABASE_URL=postgresql://...
bench-cutover: $(STAMP)
	$(BIN)/python bench/legacy_migration.py --messages $(or $(MESSAGES),1000000)
