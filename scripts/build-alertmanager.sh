#!/usr/bin/env bash
# Build Prometheus Alertmanager from the Go module proxy, once, for e2e/test_alertmanager.py
# (the alertmanager alert sink against the real thing). About 10 minutes on 2 cores the first time.
set -euo pipefail
VERSION=${ALERTMANAGER_VERSION:-v0.28.1}
CACHE=${SUPERLOOP_ALERTMANAGER_CACHE:-$HOME/.cache/superloop-ops/alertmanager}
BIN=$CACHE/$VERSION/bin
[ -x "$BIN/alertmanager" ] && exit 0
mkdir -p "$BIN"
K8S_CACHE=${SUPERLOOP_K8S_CACHE:-$HOME/.cache/superloop-ops/k8s}
# Share the module and build caches with build-k8s.sh when they are there.
SHARED=$(ls -d "$K8S_CACHE"/*/ 2>/dev/null | head -1 || true)
export GOMODCACHE=${SHARED:+${SHARED}mod} GOCACHE=${SHARED:+${SHARED}build}
export GOMODCACHE=${GOMODCACHE:-$CACHE/mod} GOCACHE=${GOCACHE:-$CACHE/build} GOPATH=$CACHE/gopath
export GOPROXY=${GOPROXY_OVERRIDE:-https://proxy.golang.org} GOFLAGS=-trimpath GOBIN=$BIN
echo "building alertmanager $VERSION into $BIN" >&2
go install "github.com/prometheus/alertmanager/cmd/alertmanager@$VERSION"
