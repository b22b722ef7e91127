"""The shipped catalogs are one set of bytes wherever they are packaged.

``config/`` holds the threshold-profile and alert-sink catalogs; the chart (``files/``, mounted
through a ConfigMap) and the Python package (``superloop_ops/data/``, the CLI's embedded
default) carry them too, as symlinks today. A copy that drifts would make the operator in a
cluster and the CLI on a laptop judge the same loop with different thresholds, so the test
compares the resolved bytes, whatever form the copies take.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "config"
COPIES = (
    ROOT / "helm" / "superloop-ops" / "files",
    ROOT / "operator" / "src" / "superloop_ops" / "data",
)
CHART_CONFIG_MAP = ROOT / "helm" / "superloop-ops" / "templates" / "configmap.yaml"


def _catalogs(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("*.json"))


CATALOGS = _catalogs(SOURCE)


def test_the_catalogs_are_there() -> None:
    assert CATALOGS == ["ops-manager-alert-sinks.v1.json", "ops-manager-threshold-profiles.v1.json"]


@pytest.mark.parametrize("copy_dir", COPIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_copy_holds_the_same_catalogs(copy_dir: Path) -> None:
    assert _catalogs(copy_dir) == CATALOGS


@pytest.mark.parametrize("name", CATALOGS)
@pytest.mark.parametrize("copy_dir", COPIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_copy_is_byte_identical_to_config(copy_dir: Path, name: str) -> None:
    copy = copy_dir / name
    resolved = copy.resolve(strict=True)  # a dangling symlink fails here
    assert ROOT in resolved.parents, f"{copy} resolves outside the repository: {resolved}"
    assert resolved.read_bytes() == (SOURCE / name).read_bytes()


@pytest.mark.parametrize("name", CATALOGS)
def test_the_installed_package_serves_the_same_bytes(name: str) -> None:
    """What the CLI reads through importlib.resources, not only what the source tree holds."""
    packaged = importlib.resources.files("superloop_ops").joinpath("data", name).read_bytes()
    assert packaged == (SOURCE / name).read_bytes()


@pytest.mark.parametrize("name", CATALOGS)
def test_catalog_is_a_versioned_json_object(name: str) -> None:
    document = json.loads((SOURCE / name).read_text())
    assert isinstance(document, dict)
    assert document["schemaVersion"] == "v1"


@pytest.mark.parametrize("name", CATALOGS)
def test_the_chart_config_map_lists_the_catalog(name: str) -> None:
    """The ConfigMap template skips a file it cannot find, so a new catalog must be named there."""
    assert f'"{name}"' in CHART_CONFIG_MAP.read_text()
