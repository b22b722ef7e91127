# The two commands a newcomer needs (see README.md):
#   make demo   local control plane + operator + simulated fleet, live status
#   make test   every check and test CI runs (lint, types, layers, CRD drift, unit, component, e2e)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install tools k8s-binaries alertmanager lint unit e2e crds clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# System tools the tests use: openssl (PKI of the test control plane), promtool (metrics and alert
# rules), jq, lua5.1 (Argo CD health checks).
tools:
	@bash scripts/install-tools.sh

k8s-binaries:
	bash e2e/harness/build-k8s.sh

# Alertmanager for the alertmanager sink's e2e test (built once from the Go module proxy).
alertmanager:
	bash scripts/build-alertmanager.sh

lint: install
	$(BIN)/ruff check operator tests e2e benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python operator/tools/gen_crds.py --check

crds: install
	$(BIN)/python operator/tools/gen_crds.py

unit: install
	$(BIN)/pytest -q tests

e2e: install tools k8s-binaries alertmanager
	$(BIN)/pytest -q e2e

test: install tools k8s-binaries alertmanager lint
	$(BIN)/pytest -q -p no:cacheprovider tests e2e

demo: install tools k8s-binaries
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache
