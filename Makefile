# Every target creates .venv when it is missing and (re)installs when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
URL ?= sqlite:///./relaystore.db

.PHONY: run test bench bench-quick lint soak clean services

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python examples/quickstart.py --url '$(URL)'

services:
	@bash scripts/ensure-services.sh

test: $(STAMP) services
	$(BIN)/python -m pytest -q

bench: $(STAMP) services
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP) services
	$(BIN)/python -m benchmarks --quick

soak: $(STAMP) services
	$(BIN)/python -m pytest -q -m soak tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache relaystore.db*
