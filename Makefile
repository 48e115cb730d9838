# costslo — common tasks. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help venv tools generate bench lab-up lab-down lab-status lint typecheck test test-unit test-integration demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv with the package and its dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

tools: ## build the lab's tools from Go modules into the cache (seconds when warm)
	bash hack/tools/build.sh

generate: venv ## regenerate crds/ from the pydantic models in operator/costslo/api.py
	$(BIN)/python -m costslo.crdgen

lab-up: venv tools ## start the lab: control plane, fake GPU nodes, kube-state-metrics, Prometheus, simulator
	bash hack/lab/lab.sh up

lab-down: ## stop every lab process
	bash hack/lab/lab.sh down

lab-status: ## show the lab's processes, nodes and scrape targets
	bash hack/lab/lab.sh status

lint: venv ## ruff lint and format check
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

typecheck: venv ## mypy (strict) on operator/costslo
	$(BIN)/mypy

test: lint typecheck tools ## lint, type-check, then every test (starts and stops the lab itself)
	$(BIN)/pytest

test-unit: venv tools ## unit tests only (no lab; promtool from the tool cache checks PromQL)
	$(BIN)/pytest tests/unit

test-integration: venv tools ## integration tests against the lab
	$(BIN)/pytest tests/integration

demo: lab-up ## a vLLM Deployment under a CostSLO: a bad model swap blocked, a good one promoted, replicas trimmed
	bash hack/demo.sh

bench: venv ## queries and CPU per evaluation cycle, batched vs per-object (docs/benchmarks.md)
	$(BIN)/python bench/bench_queries.py

clean: ## remove the virtualenv and caches (not the tool cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache operator/*.egg-info
