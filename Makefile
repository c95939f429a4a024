# One command each: `make test` and `make demo` work on a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit demo scenarios clean services bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy bot handlers

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration"

# Tests run real servers: the CNCF registry (Debian's docker-registry) is installed if missing.
services:
	bash scripts/ensure-docker-registry.sh

test: lint typecheck services
	$(BIN)/pytest -q

# `make demo DEMO_ARGS=--socket` also asks the bot over Socket Mode, across a connection refresh.
demo: $(STAMP)
	$(BIN)/python -m bot demo $(DEMO_ARGS)

scenarios: $(STAMP)
	$(BIN)/python -m bot scenarios

# What one storm costs the bot (not part of `make test`; needs Redis on 127.0.0.1:6379 or
# REDIS_URL). `make bench SIZES="200 2000 10000"` adds the big run; BENCH_ARGS="--json" etc.
SIZES ?= 200 2000
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/storm.py $(SIZES) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
