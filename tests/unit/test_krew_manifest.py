"""The krew manifest and its shim: a valid krew Plugin once the release bot fills in the archive,
one version everywhere, and a shim that runs the plugin through pipx (or says why it cannot)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from superloop_ops import __version__

KREW = Path(__file__).resolve().parents[2] / "plugins" / "krew"


def _rendered() -> dict[str, object]:
    """What krew-release-bot produces: the template line becomes ``uri`` and ``sha256``."""
    text = (KREW / "superloop.yaml").read_text()
    tag = "v" + __version__

    def filled(match: re.Match[str]) -> str:
        return f"uri: {match.group(1).replace('{{ .TagName }}', tag)}\n      sha256: {'ab' * 32}"

    text = re.sub(r"\{\{addURIAndSha \"([^\"]+)\" \.TagName \}\}", filled, text)
    doc: dict[str, object] = yaml.safe_load(text)
    return doc


def test_manifest_is_a_krew_plugin_with_the_package_version() -> None:
    doc = _rendered()
    assert doc["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert doc["kind"] == "Plugin"
    spec = doc["spec"]
    assert isinstance(spec, dict)
    assert spec["version"] == f"v{__version__}"
    assert len(spec["shortDescription"]) <= 50
    (platform,) = spec["platforms"]
    assert platform["bin"] == "kubectl-superloop"
    assert platform["uri"].endswith(f"/v{__version__}/kubectl-superloop.tar.gz")
    assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
    assert {f["from"] for f in platform["files"]} == {"kubectl-superloop", "LICENSE"}


def test_shim_runs_the_plugin_through_pipx(tmp_path: Path) -> None:
    shim = KREW / "kubectl-superloop"
    assert f"VERSION={__version__}\n" in shim.read_text()
    fake = tmp_path / "pipx"
    fake.write_text('#!/bin/sh\necho "pipx $*"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    ran = subprocess.run(
        [str(shim), "get", "loops", "-A"], capture_output=True, text=True, env=env, check=False
    )
    assert (
        ran.stdout.strip() == f"pipx run --spec superloop-ops=={__version__} kubectl-superloop get loops -A"
    )
    fake.unlink()
    missing = subprocess.run([str(shim), "get"], capture_output=True, text=True, env=env, check=False)
    assert missing.returncode == 1
    assert "needs pipx" in missing.stderr
