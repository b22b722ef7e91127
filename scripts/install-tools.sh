#!/usr/bin/env bash
# Install the system tools the tests need, once, from Debian's packages (a fresh machine has none):
#   openssl (PKI of the test control plane), promtool (metrics, alert rules), jq, lua5.1 (Argo CD
#   health checks);
#   podman + mmdebstrap (the operator image, built from the Dockerfile on a local Debian base);
#   runc, the CNI plugins, iptables and conntrack (the e2e cluster's node: containerd + kubelet).
set -euo pipefail
need=()
want() { command -v "$1" >/dev/null || need+=("$2"); }
want openssl openssl
want promtool prometheus
want jq jq
want podman podman
want mmdebstrap mmdebstrap
want runc runc
want iptables iptables
want conntrack conntrack
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
want lua5.1 lua5.1
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
