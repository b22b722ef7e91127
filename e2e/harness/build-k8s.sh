#!/usr/bin/env bash
# Build the Kubernetes cluster used by e2e tests from the Go module proxy, once: the control plane
# (kube-apiserver, kube-controller-manager, kubectl, etcd, helm) and the node (kube-scheduler,
# kubelet, and containerd 2 with its runc shim and ctr). Everything lands in a cache directory
# outside the repository; only missing binaries are built, so a later call with all of them
# present returns at once.
#
#   SUPERLOOP_K8S_CACHE        cache root (default ~/.cache/superloop-ops/k8s)
#   SUPERLOOP_K8S_VERSION      Kubernetes release (default v1.36.3)
#   SUPERLOOP_CONTAINERD_VERSION  containerd release (default v2.4.2; 1.36 needs containerd 2)
set -euo pipefail

K8S=${SUPERLOOP_K8S_VERSION:-v1.36.3}
HELM=${SUPERLOOP_HELM_VERSION:-v3.21.4}
CONTAINERD=${SUPERLOOP_CONTAINERD_VERSION:-v2.4.2}
ROOT=${SUPERLOOP_K8S_CACHE:-$HOME/.cache/superloop-ops/k8s}/$K8S
BIN=$ROOT/bin
K8S_CMDS=(kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet)
CONTAINERD_CMDS=(containerd containerd-shim-runc-v2 ctr)
WANT=("${K8S_CMDS[@]}" etcd helm "${CONTAINERD_CMDS[@]}")

have_all() { for b in "${WANT[@]}"; do [ -x "$BIN/$b" ] || return 1; done; }
if have_all; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || {
  echo "build-k8s: a Go toolchain is required (any Go >= 1.21 fetches the 1.26 toolchain it needs" \
       "from the module proxy; e.g. apt-get install golang-go)" >&2
  exit 1
}
mkdir -p "$BIN" "$ROOT/mod" "$ROOT/build" "$ROOT/work"
export GOMODCACHE=$ROOT/mod GOCACHE=$ROOT/build GOPATH=$ROOT/gopath
# auto: use the local Go when it satisfies the release's `go` line, else fetch that toolchain
# from the module proxy (an older distribution Go is enough to start).
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto} CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod"
# Only the module proxy is reachable; never fall back to VCS.
export GOPROXY=${GOPROXY_OVERRIDE:-https://proxy.golang.org} GONOSUMDB= GOFLAGS="$GOFLAGS"
case "$(go env GOPROXY)" in *direct*) export GOPROXY=${GOPROXY%%,direct};; esac

STAGING=v0.${K8S#v1.}
MINOR=${K8S#v1.}; MINOR=${MINOR%%.*}
cd "$ROOT/work"
log() { printf '[build-k8s %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ ! -f go.mod ]; then
  log "reading staging module list from k8s.io/kubernetes@$K8S"
  UPSTREAM=$(cd "$ROOT" && go mod download -json "k8s.io/kubernetes@$K8S" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  GOVER=$(awk '$1=="go"{print $2; exit}' "$UPSTREAM")
  GODEBUG_LINE=$(awk '$1=="godebug"{print; exit}' "$UPSTREAM")
  {
    printf 'module local.invalid/superloop-k8s-bin\n\ngo %s\n\n%s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
      "$GOVER" "$GODEBUG_LINE" "$K8S"
    # Every staging module the release requires at v0.0.0 (33 are replaced upstream; the two
    # sample-* ones are never required, so 31 for v1.36).
    grep -E '^\s+k8s\.io/[A-Za-z0-9._-]+ v0\.0\.0$' "$UPSTREAM" | awk '{print $1}' | sort -u |
      while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING"; done
    printf ')\n'
  } > go.mod.tmp
  mv go.mod.tmp go.mod
  log "staging replaces: $(grep -c '=>' go.mod)"
fi

ETCD=$(go mod download -json "k8s.io/apiserver@$STAGING" | python3 -c '
import json,sys,re
gomod=open(json.load(sys.stdin)["GoMod"]).read()
print(re.search(r"go\.etcd\.io/etcd/server/v3 (v\S+)", gomod).group(1))')
log "etcd version required by apiserver: $ETCD"

log "go get (module graph)"
go get $(printf "k8s.io/kubernetes/cmd/%s@$K8S " "${K8S_CMDS[@]}") "go.etcd.io/etcd/server/v3@$ETCD" >&2

LD="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LD="$LD -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean"
done
TAGS=selinux,notest,grpcnotrace
for cmd in "${K8S_CMDS[@]}"; do
  [ -x "$BIN/$cmd" ] && continue
  log "go build $cmd"
  go build -tags "$TAGS" -ldflags "$LD" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" && mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done
if [ ! -x "$BIN/etcd" ]; then
  log "go build etcd $ETCD"
  go build -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$BIN/etcd.tmp" "$BIN/etcd"
fi
if [ ! -x "$BIN/helm" ]; then
  log "go install helm $HELM"
  HLD="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    HLD="$HLD -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$MINOR"
  done
  (cd "$ROOT" && GOFLAGS=-trimpath GOBIN="$BIN" go install -ldflags "$HLD" "helm.sh/helm/v3/cmd/helm@$HELM")
fi
missing_containerd() { for b in "${CONTAINERD_CMDS[@]}"; do [ -x "$BIN/$b" ] || return 0; done; return 1; }
if missing_containerd; then
  log "go install containerd $CONTAINERD"
  # Without cgo: the btrfs, devmapper and zfs snapshotters are left out (overlayfs is used).
  (cd "$ROOT" && GOFLAGS=-trimpath GOBIN="$BIN" go install -tags no_btrfs,no_devmapper,no_zfs \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD" \
    $(printf "github.com/containerd/containerd/v2/cmd/%s@$CONTAINERD " "${CONTAINERD_CMDS[@]}"))
fi
have_all || { echo "build-k8s: some binaries are missing in $BIN" >&2; exit 1; }
log "done in ${SECONDS}s: $("$BIN/kube-apiserver" --version)"
echo "$BIN"
