# The Makefile is the interface: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Extra prerequisites of `make test` (hack/kube.mk adds the Kubernetes test binaries).
TEST_PREREQS :=
PYTEST_ARGS ?=

-include hack/kube.mk
-include hack/release.mk

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: install
install: $(STAMP) ## Create the virtualenv and install the project with its dev tools

.PHONY: run
run: $(STAMP) ## Run API + worker + sandbox providers (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set)
	$(VENV)/bin/outbound run

.PHONY: migrate
migrate: $(STAMP) ## Apply database migrations to DATABASE_URL (or the embedded server)
	$(VENV)/bin/outbound migrate

.PHONY: test
test: $(STAMP) $(TEST_PREREQS) ## Run the whole test suite against real servers
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff + mypy --strict + the sender's layers (lint-imports)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy sender operator tests bench
	$(VENV)/bin/lint-imports

.PHONY: fmt
fmt: $(STAMP) ## Format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: bench
bench: $(STAMP) ## Benchmarks, measured side by side in one run (see docs/performance.md)
	$(PY) -m bench

.PHONY: clean
clean: ## Remove the virtualenv, caches and local state
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: schema
schema: $(STAMP) ## Rewrite store/schema.sql from a database migrated from empty (after adding a migration)
	$(PY) -m tests.make_schema
