# The two commands: `make demo` runs the platform, `make test` runs every check.
# Both install whatever is missing first (Debian packages, TimescaleDB, the Python environment).

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export ELDERCARE_STATE_DIR ?= $(CURDIR)/state

.PHONY: setup demo test lint typecheck pytest stack-up stack-down stack-status lock clean

setup:
	@tools/setup-debian.sh
	@tools/setup-venv.sh
	@tools/setup-web.sh

demo: setup
	$(BIN)/eldercare demo

test: setup lint typecheck pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest $(PYTEST_ARGS)

stack-up: setup
	$(BIN)/eldercare stack up

stack-down:
	$(BIN)/eldercare stack down

stack-status:
	$(BIN)/eldercare stack status

# Re-pin requirements.lock from the ranges in pyproject.toml (run by a developer, then commit the lock).
lock:
	rm -rf /tmp/eldercare-lock && python3.11 -m venv /tmp/eldercare-lock
	/tmp/eldercare-lock/bin/pip install -q --upgrade pip && /tmp/eldercare-lock/bin/pip install -q '.[dev]'
	/tmp/eldercare-lock/bin/pip freeze --all --exclude-editable | grep -vE '^(eldercare|pip)( ?==| @ )' > requirements.lock

clean:
	-$(BIN)/eldercare stack down
	rm -rf $(VENV) state build *.egg-info
