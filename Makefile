# The two commands a newcomer needs (see README.md):
#   make demo   local control plane + operator + simulated fleet, live status
#   make test   every check and test CI runs (lint, types, layers, CRD drift, unit, component, e2e)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install tools k8s-binaries image alertmanager lint unit e2e crds clean

# The e2e cluster: with KUBECONFIG set, that cluster, unchanged (nothing local is built, no node
# starts; kubectl and helm come from PATH or the build-k8s.sh cache). Otherwise the project's own
# control plane with a node (docs/controlplane.md): its binaries, the operator image, and
# SUPERLOOP_E2E_NODE=1 so the in-cluster tests run.
ifdef KUBECONFIG
CLUSTER :=
E2E_ENV :=
else
CLUSTER := k8s-binaries image
E2E_ENV := SUPERLOOP_E2E_NODE=1
endif

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# System tools the tests use: openssl (PKI of the test control plane), promtool (metrics and alert
# rules), jq, lua5.1 (Argo CD health checks), podman + mmdebstrap (the image), runc + CNI plugins
# (the node).
tools:
	@bash scripts/install-tools.sh

k8s-binaries:
	bash e2e/harness/build-k8s.sh

# The operator image from the Dockerfile (podman, on a local Debian base), cached by content.
image: tools
	bash e2e/harness/build-image.sh

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

e2e: install tools $(CLUSTER) alertmanager
	$(E2E_ENV) $(BIN)/pytest -q e2e

test: install tools $(CLUSTER) alertmanager lint
	$(E2E_ENV) $(BIN)/pytest -q -p no:cacheprovider tests e2e

# The operator in its Pod on the node; `make demo DEMO_ARGS=--local-operator` runs it as a local
# process on the control plane alone instead.
demo: install tools k8s-binaries image
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache
