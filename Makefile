# Käfer: `make retrain` runs the whole pipeline (on a built-in demo upload when DATA is not given),
# `make test` runs the test suite. Both install what they need into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?=
# Where the lake and run records live; empty: the settings decide (KAFER_LAKE, kafer.toml, ./lake).
LAKE   ?=
RUNS   ?=
FAMILY ?=
# Extra options for `make lab` (tests pass port, token, no-browser); empty for a person.
LAB_ARGS ?=
# Extra options for `make desk` (e.g. DESK_ARGS="--port 8867 --no-browser").
DESK_ARGS ?=
# Options for `make bench` (e.g. BENCH_ARGS="--only scale": the plant-history figures alone).
BENCH_ARGS ?=
# Jupyter refuses to run as root unless told; the machines this runs on often are root.
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
WHERE   = $(if $(LAKE),--lake $(LAKE)) $(if $(RUNS),--runs $(RUNS))
DEMO   := demo
STAMP  := $(VENV)/.installed

.PHONY: setup test retrain ingest demo-data bench lab desk messages clean

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
	$(BIN)/kafer retrain $(DEMO)/upload $(WHERE) $(if $(FAMILY),--family $(FAMILY))
else
	$(BIN)/kafer retrain $(DATA) $(WHERE) $(if $(FAMILY),--family $(FAMILY))
endif

ingest: setup
	@test -n "$(DATA)" || { echo "usage: make ingest DATA=FOLDER"; exit 2; }
	$(BIN)/kafer ingest $(DATA) $(if $(LAKE),--lake $(LAKE))

bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The notebooks are saved back without outputs (kafer.savehook): executed copies belong in runs/.
lab: setup
	$(BIN)/jupyter lab notebooks/ --FileContentsManager.pre_save_hook=kafer.savehook.strip_outputs $(AS_ROOT) $(LAB_ARGS)

desk: setup
	$(BIN)/kafer desk $(WHERE) $(DESK_ARGS)

# The translations (kafer/locales): add the messages the code marks and a catalog lacks, untranslated, and
# say what is still to translate.
messages: setup
	$(BIN)/python -c 'import sys; from kafer.i18n import main; sys.exit(main(["--update"]))'

clean:
	rm -rf $(or $(LAKE),lake) $(or $(RUNS),runs)/*/ $(DEMO) .pytest_cache
