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

# the TypeScript client's pinned dev dependencies (its tests compile and run it with node)
clients/ts/node_modules: clients/ts/package-lock.json
	cd clients/ts && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	touch clients/ts/node_modules

test: setup clients/ts/node_modules
	$(BIN)/python -m pytest -q --durations=25
