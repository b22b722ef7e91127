"""The image installs exactly requirements.lock: every dependency pinned, hashed and in range.

The Dockerfile runs ``pip install --require-hashes --no-deps -r requirements.lock`` and then
installs the package itself without resolution (``--no-deps --no-build-isolation``). A runtime
dependency or build backend that pyproject.toml names but the lock lacks would only fail in the
image build (or, worse, at import in the Pod); a pin outside pyproject's range means the lock
is stale. Regenerate with ``bash scripts/lock-requirements.sh``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)")


def _lock() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, hashes), from the pip requirements format uv writes."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
            entries[canonicalize_name(match.group(1))] = (Version(match.group(2)), hashes)
    return entries


LOCK = _lock()
DECLARED = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]


@pytest.mark.parametrize("spec", DECLARED)
def test_every_declared_requirement_is_pinned_within_its_range(spec: str) -> None:
    requirement = Requirement(spec)
    name = canonicalize_name(requirement.name)
    assert name in LOCK, f"{name} is missing from requirements.lock (bash scripts/lock-requirements.sh)"
    version, _ = LOCK[name]
    assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version} outside {spec}"


def test_every_pin_carries_a_hash() -> None:
    assert len(LOCK) >= len(DECLARED)
    assert [name for name, (_, hashes) in LOCK.items() if not hashes] == []


def test_the_dockerfile_installs_only_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "--no-deps --no-build-isolation --no-index ." in dockerfile
    assert dockerfile.count("pip install") == 2
