# Two entry points on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: demo test lint ui clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/system-deps.sh demo
	$(BIN)/dhsurvey demo

# Java, Chromium, Redis and R (survey, haven) the tests need, from Debian when missing.
test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/ruff check src pipelines tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/dhsurvey lint instruments

ui: $(STAMP)
	$(BIN)/dhsurvey ui

clean:
	rm -rf $(VENV) data .pytest_cache
