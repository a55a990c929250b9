# Concord: `make run` for the demo, `make test` for the suite. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO_PASSWORD ?= concord-demo
PORT ?= 8000
export DEMO_PASSWORD

.PHONY: install run seed test lint format bench bench-identity-1m bench-ingest-1m clean browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# The demo world comes from the simulators, through the connectors and the real pipeline.
seed: install
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py demo_connect --sync --if-empty
	$(BIN)/python manage.py demo_users

run: seed
	@echo ""
	@echo "  Concord is starting at http://127.0.0.1:$(PORT)/"
	@echo "  Log in as sales, service, finance, steward or admin (partner: API only)."
	@echo "  Password for every demo user: $(DEMO_PASSWORD)  (set DEMO_PASSWORD to change it)"
	@echo "  Simulated CRM, billing and help desk on ports 8101-8103 change every 20 s;"
	@echo "  the worker pulls them every minute and receives their webhooks."
	@echo ""
	DEBUG=1 CONCORD_WEB_PORT=$(PORT) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f config/Procfile -d . start

# Browser tests drive Debian's Chromium; install it when missing and we may (root + apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install Debian's chromium for the browser tests"; fi; }

test: install browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var .pytest_cache

# Benchmarks write their results into docs/benchmarks.md. The pipeline one needs a
# PostgreSQL server (it creates and drops its own database there).
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
bench: install
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m integrations.bench --records 100000 --update-docs
	$(BIN)/python -m customers.identity.bench --records 100000 --seed 2 --write docs/benchmarks.md

# The identity-resolution runs at 100,000 and a million records, next to plain Splink on
# the same records (about half an hour, ~6 GB; installs the bench extra).
bench-identity-1m: install
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m customers.identity.bench --records 100000 --records 1000000 --seed 2 --seed 3 --splink --splink-max 1000000 --write docs/benchmarks.md

# Ingest-path matching against a million customers in PostgreSQL (~6 minutes, ~2 GB; the
# benchmark creates and drops its own database).
bench-ingest-1m: install
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m customers.identity.ingest_bench --customers 1000000 --records 2000 --update-docs
