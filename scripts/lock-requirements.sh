#!/usr/bin/env bash
# Regenerate requirements.lock: every runtime dependency of the operator (pyproject.toml) and the
# build backend, pinned with their hashes, for the image the Dockerfile builds (CPython 3.11,
# linux). Run it after changing [project].dependencies; commit the result.
#   bash scripts/lock-requirements.sh            # re-resolve within the pyproject.toml ranges
#   bash scripts/lock-requirements.sh --upgrade  # also move pinned versions forward
# The resolver is uv (from PyPI, into a throw-away virtualenv when it is not on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  python3 -m venv "$tmp/uv" && "$tmp/uv/bin/pip" install --quiet uv && UV=$tmp/uv/bin/uv
fi
# The build backend is installed from the lock too (pip install --no-build-isolation).
python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["build-system"]["requires"]))' \
  > "$tmp/build-system.in"
"$UV" pip compile --quiet pyproject.toml "$tmp/build-system.in" "$@" \
  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-annotate --custom-compile-command "bash scripts/lock-requirements.sh" --output-file requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) pinned packages" >&2
