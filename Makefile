# The two set-up commands of the README: `make up` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/storepulse: pyproject.toml
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: install up test bench
install: $(BIN)/storepulse

up: install
	$(BIN)/storepulse up

test: install
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/ingest.py
