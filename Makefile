# Käfer: `make retrain` runs the whole pipeline (on a built-in demo upload when DATA is not given),
# `make test` runs the test suite. Both install what they need into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?=
LAKE   ?= ./lake
RUNS   ?= ./runs
FAMILY ?=
# Extra options for `make lab` (tests pass port, token, no-browser); empty for a person.
LAB_ARGS ?=
DEMO   := demo
STAMP  := $(VENV)/.installed

.PHONY: setup test retrain ingest demo-data bench lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name kafer --display-name "Käfer (.venv)" >/dev/null
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

$(DEMO)/upload: | setup
	$(BIN)/kafer demo-data $(DEMO) --cars 2000 --seed 0

demo-data: $(DEMO)/upload

retrain: setup
ifeq ($(strip $(DATA)),)
	$(MAKE) --no-print-directory demo-data
	$(BIN)/kafer retrain $(DEMO)/upload --lake $(LAKE) --runs $(RUNS) $(if $(FAMILY),--family $(FAMILY))
else
	$(BIN)/kafer retrain $(DATA) --lake $(LAKE) --runs $(RUNS) $(if $(FAMILY),--family $(FAMILY))
endif

ingest: setup
	@test -n "$(DATA)" || { echo "usage: make ingest DATA=FOLDER"; exit 2; }
	$(BIN)/kafer ingest $(DATA) --lake $(LAKE)

bench: setup
	$(BIN)/python bench/run.py

lab: setup
	$(BIN)/jupyter lab notebooks/ $(LAB_ARGS)

clean:
	rm -rf $(LAKE) $(RUNS)/*/ $(DEMO) .pytest_cache
