#!/usr/bin/env bash
# Install the system tools the tests need, once, from Debian's packages (a fresh machine has none).
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v promtool >/dev/null || need+=(prometheus)
command -v jq >/dev/null || need+=(jq)
command -v lua5.1 >/dev/null || need+=(lua5.1)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
