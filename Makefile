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

# The pure tests (marker `unit`: no servers, no clocks) on both cores; then those that start servers, on
# both cores too, a test module to a core (its servers and fixtures are set up once); then the few that
# measure a latency against a bound (marker `alone`), one at a time with the machine to themselves.
test: install
	$(BIN)/pytest -q -m unit -n 2 --durations=10
	$(BIN)/pytest -q -m 'not unit and not alone' -n 2 --dist loadfile --durations=25
	$(BIN)/pytest -q -m alone --durations=10

# The pure domain tests alone (pytest marker `unit`): seconds, no servers.
test-unit: install
	$(BIN)/pytest -q -m 'unit and not slow'

bench: install
	$(BIN)/python bench/ingest.py

# Screenshots of every dashboard view into docs/screenshots/ (a fresh storepulse, Debian's chromium; not CI).
screenshots: install
	$(BIN)/python -m tests.screenshots --lang en
	$(BIN)/python -m tests.screenshots --lang de --views overview,customers
