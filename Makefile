# One command each: `make test` and `make demo` work on a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit demo scenarios clean services bench lock

# The runtime comes from requirements.lock (hash-checked), as in the image, so the tests run
# the versions the image ships; then the bot itself (editable) and the dev tools.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy bot handlers

# The suite runs on PYTEST_WORKERS pytest-xdist workers (most tests wait on timers, servers
# and child processes, not the CPU: 4 workers on 2 CPUs). `PYTEST_WORKERS=0` runs it in one
# process; `pytest tests/x.py` alone is one process too. worksteal: an idle worker takes tests
# queued on a busy one, so a slow file (tests/app/test_rbac.py) does not end the run alone.
# What a test must do to be safe here: tests/support/README.md, "Parallel-safe tests".
PYTEST_WORKERS ?= 4
PYTEST_ARGS := -q $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist worksteal)

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS) -m "not integration"

# Tests run real servers: the CNCF registry (Debian's docker-registry) is installed if missing.
services:
	bash scripts/ensure-docker-registry.sh

test: lint typecheck services
	$(BIN)/pytest $(PYTEST_ARGS)

# `make demo DEMO_ARGS=--socket` also asks the bot over Socket Mode, across a connection refresh;
# `make demo DEMO_ARGS=--fleet` plays several clusters behind one Slack app (needs Redis).
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

# requirements.lock: every runtime dependency (and the build backend the Dockerfile builds the
# bot with) pinned, with the sha256 of every file PyPI has for that version; the image installs
# from it with --require-hashes. Resolved by uv against PyPI for the image's CPython 3.11 on
# Linux. Existing pins are kept; `make lock LOCK_ARGS=--upgrade` moves each to the newest that
# pyproject.toml allows (or `LOCK_ARGS="--upgrade-package redis"`). tests/release fails
# when pyproject.toml and the lock disagree.
# uv lives in a venv of its own: `make lock` works without the project installed (or its lock).
UV_VERSION ?= 0.13.8
LOCK_ARGS ?=
LOCK_TOOLS := $(VENV)/lock-tools
UV_STAMP := $(LOCK_TOOLS)/.uv-$(UV_VERSION)
BUILD_REQUIRES := import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))

$(UV_STAMP):
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)
	touch $(UV_STAMP)

lock: $(UV_STAMP)
	$(LOCK_TOOLS)/bin/python -c '$(BUILD_REQUIRES)' | $(LOCK_TOOLS)/bin/uv pip compile --quiet \
		--generate-hashes --python-version 3.11 --python-platform linux \
		--custom-compile-command "make lock" $(LOCK_ARGS) -o requirements.lock pyproject.toml -

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
