#!/usr/bin/env bash
# Regenerate the two lock files (pip requirements format, every pin with its hashes):
#   requirements.lock      what the image installs: every runtime dependency of the operator
#                          (pyproject.toml) and the build backend, for CPython 3.11 on linux
#                          (the Dockerfile's pip install --require-hashes).
#   requirements-dev.lock  what `make install` puts in .venv: the same runtime pins (the image's
#                          lock is a constraint, so both agree), the dev tools of the `dev` extra
#                          (pytest, mypy, ruff, import-linter, ...) and the build backend, resolved
#                          for every platform (a developer may not be on linux).
# Run it after changing [project].dependencies or the dev extra; commit both files.
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
"$UV" pip compile --quiet pyproject.toml "$tmp/build-system.in" --extra dev "$@" \
  --constraint requirements.lock --universal --generate-hashes --python-version 3.11 \
  --no-annotate --custom-compile-command "bash scripts/lock-requirements.sh" --output-file requirements-dev.lock
for lock in requirements.lock requirements-dev.lock; do
  echo "$lock: $(grep -c '==' "$lock") pinned packages" >&2
done
