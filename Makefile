# The two set-up commands of the README: `make up` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/storepulse: pyproject.toml
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: install up check test test-unit bench screenshots
install: $(BIN)/storepulse

up: install
	$(BIN)/storepulse up

# Lint and type checks (config in pyproject.toml): run by .ci/run before the tests.
check: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install
	$(BIN)/pytest -q --durations=25

# The pure domain tests alone (pytest marker `unit`): seconds, no servers.
test-unit: install
	$(BIN)/pytest -q -m 'unit and not slow'

bench: install
	$(BIN)/python bench/ingest.py

# Screenshots of every dashboard view into docs/screenshots/ (a fresh storepulse, Debian's chromium; not CI).
screenshots: install
	$(BIN)/python -m tests.screenshots --lang en
	$(BIN)/python -m tests.screenshots --lang de --views overview,customers
