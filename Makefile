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

# Java, Chromium, Redis and R (survey, haven) the tests need, from Debian when missing. The
# Central integration tests run against the real ODK Central (../shared/central), started in a
# temporary folder for the run and stopped afterwards, also when tests fail: scripts/central.sh.
test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/ruff check src pipelines tests bench
	$(BIN)/mypy
	bash scripts/central.sh run $(BIN)/python -m pytest -q -n auto --dist loadfile --durations=30

lint: $(STAMP)
	$(BIN)/dhsurvey lint instruments

ui: $(STAMP)
	$(BIN)/dhsurvey ui

clean:
	rm -rf $(VENV) data .pytest_cache
