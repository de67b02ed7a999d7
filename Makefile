# The two entry points a fresh clone needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test

$(BIN)/byod: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/byod

setup: $(BIN)/byod
	$(BIN)/byod toolchain install

demo: setup
	$(BIN)/byod demo

test: setup
	$(BIN)/python -m pytest -q
