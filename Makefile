# stockcast — `make help` lists every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
STAMP := $(VENV)/.compiled

# Self-contained by default: Prefect's home inside the project; no library phones home.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(BIN):$(PATH)

MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200
SERVE_PORT ?= 5001

## help: list every target with one line each
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## //' | awk -F': ' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo
	@echo "One stage alone: .venv/bin/python -m flows.repro STAGE --single-item [--force]"
	@echo "Plain dvc repro: put the venv first on PATH (PATH=\$$PWD/.venv/bin:\$$PATH dvc repro),"
	@echo "  since each stage's cmd is 'python -m flows.stages STAGE'."

## setup: create .venv with the pinned dependencies, compiled to bytecode (skipped when up to date)
.PHONY: setup
setup: $(STAMP)

$(INSTALLED): pyproject.toml requirements.lock
	@echo "setup: installing the pinned dependencies into .venv (requirements.lock, with uv)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(INSTALLED)

# The venv compiled to bytecode once, as pip does at install and uv does not: otherwise each
# run compiles every module it imports (where PYTHONDONTWRITEBYTECODE is set, as on our
# machines) or the first run does. TensorFlow's import took 9.6 s from source against 3.9 s
# compiled, Great Expectations' 6.4 against 3.1, MLflow's 3.3 against 1.3. A few packages ship
# files that are not Python 3.11 (templates, fixtures): compileall skips them and goes on.
$(STAMP): $(INSTALLED)
	@echo "setup: compiling .venv to bytecode on every core (a minute or two, once)"
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(STAMP)
	@echo "setup: done"

## lock: re-resolve requirements.lock from pyproject.toml's pins
.PHONY: lock
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dask --extra dev --python-version 3.11 -o requirements.lock

## pipeline: set up if needed, then run every stale DVC stage (dvc status decides) on the bundled sample
.PHONY: pipeline
pipeline: $(STAMP)
	$(BIN)/stockcast run

## repro-force: rerun every stage even if nothing changed
.PHONY: repro-force
repro-force: $(STAMP)
	$(BIN)/stockcast run --force

## test: run the test suite (unit, data, model, flows, end to end, the browser check of the UI)
.PHONY: test
test: $(STAMP) browser postgres
	STOCKCAST_REQUIRE_BROWSER=1 STOCKCAST_REQUIRE_CLUSTER=1 STOCKCAST_REQUIRE_POSTGRES=1 $(BIN)/python -m pytest

## browser: install Debian's headless Chromium for the UI test (needs root or sudo; skipped if present)
.PHONY: browser
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

## postgres: install Debian's PostgreSQL for the tracking-server test (needs root or sudo; skipped if present)
.PHONY: postgres
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; }

## exp: a DVC experiment, e.g. make exp SET="train.epochs=10 train.units=[32,32]"
.PHONY: exp
exp: $(STAMP)
	$(BIN)/stockcast run $(foreach kv,$(SET),-S $(kv))

## compare: the workspace, HEAD and the experiments side by side: changed params, headline metrics
.PHONY: compare
compare: $(STAMP)
	$(BIN)/stockcast compare

## retrain: one run of the daily retrain flow now (exits early when no source has a new day)
.PHONY: retrain
retrain: $(STAMP)
	$(BIN)/stockcast retrain

## schedule: serve the daily retrain flow on its cron schedule (params.yaml schedule.*) (Prefect server on 127.0.0.1:4200)
.PHONY: schedule
schedule: $(STAMP)
	$(BIN)/stockcast schedule --port $(PREFECT_PORT)

## serve-model: serve TICKER's @champion over HTTP on 127.0.0.1:5001 (SERVE_PORT), e.g. make serve-model TICKER=SH600519
.PHONY: serve-model
serve-model: $(STAMP)
	$(BIN)/stockcast serve --ticker $(or $(TICKER),SH600519) --port $(SERVE_PORT)

## bench: run every benchmark and write benchmarks/RESULTS.md
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## predict: next-day forecast of every ticker's @champion into data/predictions/ and the ledger
.PHONY: predict
predict: $(STAMP)
	$(BIN)/stockcast predict --horizon $(or $(HORIZON),1)

## ledger: every forecast served, scored against what happened (SUMMARY=1: the live skill)
.PHONY: ledger
ledger: $(STAMP)
	$(BIN)/stockcast ledger $(if $(SUMMARY),--summary,)

## lint: ruff check and format check
.PHONY: lint
lint: $(STAMP)
	$(BIN)/ruff check src flows tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src flows tests $(wildcard benchmarks)

## mutate: mutation testing (mutmut) of the rules and of the modules that wire them, against the fast tests; writes benchmarks/MUTATION.md (not part of make test; every module takes about 12 h on 2 cores, the MLflow and GX tests most of it: MUTANTS='stockcast.ops* stockcast.paths*' runs some)
MUTANTS ?=
.PHONY: mutate
mutate: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 $(foreach m,$(MUTANTS),'$(m)') || true
	$(BIN)/python benchmarks/mutation.py

## ui: serve the MLflow UI for the project's store on 127.0.0.1:5000 (MLFLOW_PORT)
.PHONY: ui
ui: $(STAMP)
	$(BIN)/stockcast ui --port $(MLFLOW_PORT)

## prefect-ui: start a Prefect server (UI and API) on 127.0.0.1:4200 (PREFECT_PORT)
.PHONY: prefect-ui
prefect-ui: $(STAMP)
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

## push: push DVC-tracked data and models to the default remote (.dvc-remote/)
.PHONY: push
push: $(STAMP)
	$(BIN)/dvc push

## pull: fetch DVC-tracked data and models from the default remote
.PHONY: pull
pull: $(STAMP)
	$(BIN)/dvc pull

## metrics: show the metrics of the last run (dvc metrics show)
.PHONY: metrics
metrics: $(STAMP)
	$(BIN)/dvc metrics show

## clean: remove the stage outputs (data/interim, data/processed, models/, reports/); never the model registry or run history
.PHONY: clean
clean:
	rm -rf data/interim data/processed models models.tmp models.old models.failed reports

## clean-stores: delete the MLflow registry and runs (mlflow.db, mlruns/) and Prefect's state (.prefect/); asks first unless FORCE=1
.PHONY: clean-stores
clean-stores:
	@if [ "$(FORCE)" != 1 ]; then \
	  read -r -p "Delete mlflow.db, mlruns/ and .prefect/: every registered model, champion and run? [y/N] " answer; \
	  [ "$$answer" = y ] || { echo "kept them"; exit 1; }; \
	fi
	rm -rf mlflow.db mlruns .prefect
