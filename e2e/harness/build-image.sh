#!/usr/bin/env bash
# Build the operator image from the Dockerfile with podman: no Docker engine, no registry. Where
# no base image can be pulled, the base is made here from Debian packages (mmdebstrap: bookworm
# minbase + CPython 3.11 with venv) and passed as the build argument BASE_IMAGE. Everything is
# keyed by content, so a second call with nothing changed returns at once:
#   base      localhost/superloop-ops-base:<hash of the recipe below>
#   operator  localhost/superloop-ops:<hash of the base image ID and every file the build copies>
#   pause     localhost/superloop-ops-pause:<same key>: the node's pod sandbox image (the base
#             running `sleep infinity`; registry.k8s.io/pause cannot be pulled here)
#   archive   $CACHE/superloop-ops-<key>.tar (docker-archive of both, for `ctr images import`)
# stdout: `IMAGE=<ref>`, `PAUSE_IMAGE=<ref>` and `ARCHIVE=<path>` (logs go to stderr).
#
#   SUPERLOOP_BASE_IMAGE   use this base instead of the local one (e.g. python:3.11-slim)
#   SUPERLOOP_IMAGE_CACHE  archive directory (default ~/.cache/superloop-ops/images)
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE=${SUPERLOOP_IMAGE_CACHE:-$HOME/.cache/superloop-ops/images}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PACKAGES=python3,python3-venv,python-is-python3
log() { printf '[build-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing (make tools)" >&2; exit 1; }
done
mkdir -p "$CACHE"
# The build's RUN steps and `podman run` must ask for no more than this machine's hard limits.
NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=1048576
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE")

base_image() {
  if [ -n "${SUPERLOOP_BASE_IMAGE:-}" ]; then echo "$SUPERLOOP_BASE_IMAGE"; return; fi
  local recipe="mmdebstrap minbase $SUITE $MIRROR $PACKAGES nodoc v1"
  local ref="localhost/superloop-ops-base:$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"
  if ! podman image exists "$ref"; then
    log "making the base image $ref from Debian packages ($PACKAGES)"
    # A fixed SOURCE_DATE_EPOCH: the same packages give the same tarball.
    SOURCE_DATE_EPOCH=1700000000 mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --format=tar "$SUITE" - \
      "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
      "deb ${MIRROR}-security $SUITE-security main" |
      podman import --quiet --change 'CMD ["python3"]' - "$ref" >/dev/null
  fi
  echo "$ref"
}

# Every input of the build: the Dockerfile, the lock, and what its COPY lines take.
context_hash() {
  find Dockerfile .dockerignore requirements.lock pyproject.toml operator config \
    -name __pycache__ -prune -o \( -type f -o -type l \) -print | LC_ALL=C sort |
    while read -r f; do printf '%s %s\n' "$f" "$(sha256sum < "$f" | cut -c1-64)"; done | sha256sum | cut -c1-64
}

BASE=$(base_image)
BASE_ID=$(podman image inspect --format '{{.Id}}' "$BASE")
KEY=$({ echo "$BASE_ID"; context_hash; } | sha256sum | cut -c1-16)
IMAGE=localhost/superloop-ops:$KEY
PAUSE=localhost/superloop-ops-pause:$KEY
ARCHIVE=$CACHE/superloop-ops-$KEY.tar
if ! podman image exists "$IMAGE"; then
  log "podman build $IMAGE (BASE_IMAGE=$BASE)"
  SECRET=()  # the host's CA bundle, for a TLS-intercepting proxy in front of PyPI (see Dockerfile)
  CA=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
  [ -s "$CA" ] && SECRET=(--secret "id=ca-bundle,src=$CA")
  podman build --quiet --network=host "${ULIMITS[@]}" "${SECRET[@]}" --build-arg "BASE_IMAGE=$BASE" \
    --tag "$IMAGE" . >/dev/null
fi
if ! podman image exists "$PAUSE"; then
  empty=$(mktemp -d)
  printf 'FROM %s\nENTRYPOINT ["sleep", "infinity"]\n' "$BASE" > "$empty/Containerfile"
  podman build --quiet --tag "$PAUSE" "$empty" >/dev/null
  rm -rf "$empty"
fi
if [ ! -s "$ARCHIVE" ]; then
  log "podman save $ARCHIVE"
  podman save --quiet --multi-image-archive --format docker-archive --output "$ARCHIVE.tmp" "$IMAGE" "$PAUSE"
  mv "$ARCHIVE.tmp" "$ARCHIVE"
fi
touch "$ARCHIVE"  # last use
# Other builds (other worktrees, other sessions) may be using theirs right now: only archives
# unused for a day go, with their images (each code change adds a ~190 MB virtualenv layer).
find "$CACHE" -name 'superloop-ops-*.tar' -mmin +1440 -print | while read -r old; do
  stale=${old##*/superloop-ops-}; stale=${stale%.tar}
  rm -f "$old"
  podman rmi --force "localhost/superloop-ops:$stale" "localhost/superloop-ops-pause:$stale" >/dev/null 2>&1 || true
done
log "done in ${SECONDS}s"
echo "IMAGE=$IMAGE"
echo "PAUSE_IMAGE=$PAUSE"
echo "ARCHIVE=$ARCHIVE"
