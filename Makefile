# Käfer: `make retrain` runs the whole pipeline (on a built-in demo upload when DATA is not given),
# `make test` runs the test suite. Both install what they need into .venv first, from lock files.
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
# Lock files: every package pinned with the hashes of its files, resolved for Linux x86_64 and CPython
# 3.11. The runtime (pipeline, desk, notebooks) is what `make retrain` installs; `make test` adds the
# test extras. `make lock` resolves them again (LOCK_ARGS=--upgrade to take newer releases).
RUNTIME_LOCK := requirements/runtime.txt
TEST_LOCK    := requirements/test.txt
LOCK_ARGS    ?=
# A folder of wheels (`make wheelhouse`): when it holds any, installs read only from it, without network.
WHEELHOUSE ?= wheelhouse
FROM     = $(if $(wildcard $(WHEELHOUSE)/*.whl),--no-index --find-links $(WHEELHOUSE))
INSTALL  = $(BIN)/python -m pip install --quiet --require-hashes --no-deps $(FROM)
RUNTIME := $(VENV)/.runtime
TESTING := $(VENV)/.test
TOOLS   := .venv-tools
COMPILE  = $(TOOLS)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
           --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" $(LOCK_ARGS)

.PHONY: setup test retrain ingest demo-data bench lab desk messages clean lock wheelhouse

setup: $(RUNTIME)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "The lock files are \
	resolved for CPython 3.11 and $(PYTHON) is $$($(PYTHON) -V 2>&1): install Python 3.11 and run again with \
	PYTHON=python3.11." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The runtime from its lock (hashes checked), then Käfer itself, editable, built without fetching anything.
$(RUNTIME): pyproject.toml $(RUNTIME_LOCK) | $(BIN)/python
	$(INSTALL) -r $(RUNTIME_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation $(FROM) -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name kafer --display-name "Käfer (.venv)" >/dev/null
	touch $@

$(TESTING): $(RUNTIME) $(TEST_LOCK)
	$(INSTALL) -r $(TEST_LOCK)
	touch $@

test: $(TESTING)
	$(BIN)/python -m pytest -q

# Every wheel both locks name, for a machine without network (Linux x86_64, CPython 3.11): copy the
# checkout and this folder there, then `make retrain` or `make test` installs from it alone.
wheelhouse: | $(BIN)/python
	$(BIN)/python -m pip download --quiet --require-hashes --no-deps --only-binary=:all: \
		-r $(TEST_LOCK) -d $(WHEELHOUSE)
	@echo "$$(ls $(WHEELHOUSE)/*.whl | wc -l) wheels, $$(du -sh $(WHEELHOUSE) | cut -f1), in $(WHEELHOUSE)/"

lock:
	test -x $(TOOLS)/bin/uv || { $(PYTHON) -m venv $(TOOLS) && $(TOOLS)/bin/python -m pip install --quiet uv; }
	$(COMPILE) pyproject.toml requirements/build.in --extra dev -o $(TEST_LOCK)
	$(COMPILE) pyproject.toml requirements/build.in -c $(TEST_LOCK) -o $(RUNTIME_LOCK)

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
