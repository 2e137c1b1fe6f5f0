# The two commands: `make run` starts calsync, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format bench soak clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "calsync needs Python 3.11 or newer; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# caldav needs niquests, whose urllib3-future would replace urllib3 under requests;
# built with URLLIB3_NO_OVERRIDE it installs beside urllib3 instead.
PIP_INSTALL := URLLIB3_NO_OVERRIDE=1 $(BIN)/pip install --quiet --no-binary urllib3-future

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[test]'
	@touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[bench]'
	@touch $@ $(VENV)/.installed

## Start calsync (web + worker + scheduler, SQLite, embedded Redis). Ctrl-C stops it.
run: $(VENV)/.installed
	$(BIN)/calsync db upgrade
	$(BIN)/calsync up

## Lint and run the whole test suite (the browser tests use Debian's Chromium).
test: $(VENV)/.installed-test lint
	scripts/ensure-chromium
	$(BIN)/pytest

## Run the benchmarks against the local emulators (needs Redis on 127.0.0.1:6379; db 15 is flushed).
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench.run

## The long fault soak: 1,000 randomized scenarios; the counts go to test-artifacts/soak.json.
soak: $(VENV)/.installed-test
	cd tests && ../$(BIN)/python -m reliability.soak --scenarios 1000 --out ../test-artifacts/soak.json

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
