# Thin wrappers; each target bootstraps .venv from requirements.lock when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup generate check-generated check-contract lint test test-sqlite contract run demo bench bench-cutover audit clean migration

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

# A new Alembic revision for one side from its tables.py: make migration SIDE=tma MESSAGE="add x"
# (SIDE=both: one revision on each side that needs one, for a change of the shared columns)
migration: $(STAMP)
	$(BIN)/python -m scripts.makemigration "$(SIDE)" "$(MESSAGE)"

check-generated: $(STAMP)
	$(BIN)/python scripts/codegen.py check

# Fail on a change to spec/integration.yaml that breaks the released contract (spec/released/)
# without a new major version.
check-contract: $(STAMP)
	$(BIN)/python -m scripts.contract_compat

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite: lint, drift check, then every test (PostgreSQL too when TEST_DATABASE_URL is set).
test: lint check-generated check-contract
	$(BIN)/python scripts/run_tests.py

contract: $(STAMP)
	$(BIN)/python -m scripts.contract

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis .schemathesis

# Both backends on loopback with SQLite until Ctrl-C: TMA_PORT (8000), CRM_PORT (8001), DATA_DIR
# (./data) choose where, e.g. `make run TMA_PORT=8100 CRM_PORT=8101`; taken ports are refused.
run: $(STAMP)
	$(BIN)/python -m scripts.run_local

# Start both, play a scripted conversation through their APIs, print both databases, exit.
demo: $(STAMP)
	$(BIN)/python -m scripts.demo

# pip-audit on requirements.lock; needs its vulnerability service (PyPI's JSON API by default,
# AUDIT_ARGS="-s osv" for OSV), so it is not part of `make test` or CI. Exit 2 when the service
# cannot be reached: no answer is never a pass.
audit: $(STAMP)
	$(BIN)/python -m scripts.audit $(AUDIT_ARGS)

# Delivery figures on this machine, each beside a baseline and the lean reference (docs/performance.md);
# not part of `make test`. Sections and flags: BENCH_ARGS="--only relay pg --markdown".
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The legacy migration of an old TMA database of 1,000,000 messages on PostgreSQL (docs/cutover.md):
# time taken, the old system's longest stalled write, and the window with no side taking writes.
# MESSAGES=N, SIDE=crm (the old CRM's), TEST_DATABASE_URL=postgresql://...
bench-cutover: $(STAMP)
	$(BIN)/python bench/legacy_migration.py --messages $(or $(MESSAGES),1000000) --side $(or $(SIDE),tma)
