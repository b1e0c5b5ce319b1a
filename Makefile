# Every target creates .venv when it is missing and (re)installs when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
URL ?= sqlite:///./relaystore.db

.PHONY: run quickstart swarm test upstream-tests bench bench-quick bench-compare bench-baseline lint soak clean services

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: the store as an HTTP service on the SQLite default (Ctrl-C stops it gracefully).
run: $(STAMP)
	$(BIN)/relaystore serve --url '$(URL)' --host 127.0.0.1 --port 8787

# The library tour, printed through the CLI views.
quickstart: $(STAMP)
	$(BIN)/python examples/quickstart.py --url '$(URL)'

# A multi-process swarm (Python and curl sub-agents) against a running `make run`.
swarm: $(STAMP)
	$(BIN)/python examples/swarm/run.py --url http://127.0.0.1:8787

services:
	@bash scripts/ensure-services.sh

test: $(STAMP) services
	$(BIN)/python -m pytest -q

# Fetch the OpenAI Agents SDK's sdist (it ships tests/) and run its session tests on RelaySession.
upstream-tests: $(STAMP) services
	PYTHON=$(BIN)/python bash scripts/fetch-upstream-tests.sh
	$(BIN)/python -m pytest -q tests/integrations/test_openai_agents_upstream.py

bench: $(STAMP) services
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP) services
	$(BIN)/python -m benchmarks --quick --no-docs --json-out benchmarks/results/quick.json

# Compare the last full run with a saved one: BASELINE=path/to/old.json (default: the committed run).
BASELINE ?= benchmarks/results/baseline.json
# Keep the last full run as the baseline for a later `make bench-compare`.
bench-baseline:
	cp benchmarks/results/latest.json '$(BASELINE)'

bench-compare: $(STAMP)
	@test -f '$(BASELINE)' || { echo "no $(BASELINE): copy a results JSON there first (cp benchmarks/results/latest.json $(BASELINE))"; exit 1; }
	$(BIN)/python -m benchmarks --compare '$(BASELINE)' benchmarks/results/latest.json

soak: $(STAMP) services
	$(BIN)/python -m pytest -q -m soak tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache relaystore.db*
