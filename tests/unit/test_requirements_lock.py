"""The image installs exactly requirements.lock, the dev virtualenv exactly requirements-dev.lock:
every dependency pinned, hashed and in range, and the two agree on what they share.

The Dockerfile runs ``pip install --require-hashes --no-deps -r requirements.lock`` and then
installs the package itself without resolution (``--no-deps --no-build-isolation``). A runtime
dependency or build backend that pyproject.toml names but the lock lacks would only fail in the
image build (or, worse, at import in the Pod); a pin outside pyproject's range means the lock
is stale. ``make install`` does the same for the dev tools (``pip install --require-hashes
--no-deps -r requirements-dev.lock``, then the checkout editable without resolution). Regenerate
both with ``bash scripts/lock-requirements.sh``.
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


def _lock(name: str = "requirements.lock") -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, hashes), from the pip requirements format uv writes."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    text = (ROOT / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
            entries[canonicalize_name(match.group(1))] = (Version(match.group(2)), hashes)
    return entries


LOCK = _lock()
DECLARED = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
DEV_LOCK = _lock("requirements-dev.lock")
DEV_DECLARED = [*DECLARED, *PYPROJECT["project"]["optional-dependencies"]["dev"]]


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


@pytest.mark.parametrize("spec", DEV_DECLARED)
def test_the_dev_lock_pins_every_tool_and_dependency_within_its_range(spec: str) -> None:
    requirement = Requirement(spec)
    name = canonicalize_name(requirement.name)
    assert name in DEV_LOCK, (
        f"{name} is missing from requirements-dev.lock (bash scripts/lock-requirements.sh)"
    )
    version, hashes = DEV_LOCK[name]
    assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version} outside {spec}"
    assert hashes


def test_the_dev_lock_hashes_every_pin_and_agrees_with_the_image_lock() -> None:
    assert [name for name, (_, hashes) in DEV_LOCK.items() if not hashes] == []
    differ = {
        name: (str(LOCK[name][0]), str(DEV_LOCK[name][0]))
        for name in LOCK
        if LOCK[name][0] != DEV_LOCK.get(name, (None,))[0]
    }
    assert differ == {}, "the image and the dev virtualenv would run different versions"


def test_make_install_installs_only_the_dev_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP): pyproject.toml requirements-dev.lock\n", 1)[1].split("\n\n", 1)[0]
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert installs == [
        "$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock",
        "$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .",
    ]
    assert "$(BIN)/pip check" in recipe


def test_the_image_base_is_pinned_by_digest() -> None:
    """The Dockerfile's default base is an image digest, not a tag that moves under a rebuild."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    defaults = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, flags=re.M)
    assert len(defaults) == 1
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", defaults[0]), defaults[0]
    assert re.findall(r"^FROM (\S+)", dockerfile, flags=re.M) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
