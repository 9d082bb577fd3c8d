# The two commands: `make run` serves on the embedded default, `make test` runs every gate.
# Both create .venv and install the API (with its dev extra) when missing or out of date.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
API    := apps/api
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint typecheck pytest install migrate bench clean help browser

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The first `make run` is mostly this set-up. `python3 -m venv` would spend seconds of CPU
# installing (and byte-compiling) the pip bundled with Python, only to replace it with the
# current one; instead the venv is made without pip and the pip of $(PYTHON) installs the
# current pip into it (`pip --python`, pip 22.3 or newer). A $(PYTHON) without such a pip
# falls back to the bundled one.
$(BIN)/python:
	$(PYTHON) -m venv --without-pip $(VENV)
	@$(PYTHON) -m pip --python $(BIN)/python install --quiet --upgrade pip 2>/dev/null \
	  || { $(BIN)/python -m ensurepip --default-pip >/dev/null \
	       && $(BIN)/python -m pip install --quiet --upgrade pip; }

$(STAMP): $(BIN)/python $(API)/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '$(API)[dev]'
	@touch $@ $(RUN_STAMP)

# `make run` needs the service alone, not the test and lint tools.
$(RUN_STAMP): $(BIN)/python $(API)/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '$(API)'
	@touch $@

install: $(STAMP)  ## create .venv and install the API with its dev tools

run: $(RUN_STAMP)  ## migrate and serve on http://127.0.0.1:8000 (HOST=, PORT= to change; SQLite under ./data by default)
	$(BIN)/collection-api serve --host $(HOST) --port $(PORT)

migrate: $(RUN_STAMP)  ## upgrade the configured database to the newest schema
	$(BIN)/collection-api migrate

lint: $(STAMP)  ## ruff check + ruff format --check (the API, bench/ and docs/)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy (strict) on src/
	cd $(API) && ../../$(BIN)/mypy

CHROMIUM := /usr/bin/chromium

browser:  ## Debian's chromium for the browser tests (installed with apt-get when missing)
	@[ -x $(CHROMIUM) ] || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	  && echo "installing Debian's chromium for the browser tests" \
	  && DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } \
	  || echo "no $(CHROMIUM) (needs root and apt-get): the browser tests will be skipped"

pytest: $(STAMP) browser  ## the test suite (PostgreSQL when TEST_DATABASE_URL is set)
	cd $(API) && ../../$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest  ## every gate: lint, format, types, tests

BENCHES := bench/run_pipeline.py bench/scheduler.py bench/budget.py bench/row_level_security.py \
	bench/seller_directory.py bench/run_results.py bench/fair_budget.py \
	bench/http_requests.py

bench: $(STAMP)  ## benchmarks: print tables, assert nothing (PostgreSQL when reachable)
	@for b in $(BENCHES); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:  ## remove the virtualenv and caches (keeps ./data)
	rm -rf $(VENV) .ruff_cache $(API)/.pytest_cache $(API)/.mypy_cache $(API)/.ruff_cache
