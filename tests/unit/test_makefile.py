"""``make test`` and ``make e2e`` build the project's own cluster only when no ``$KUBECONFIG``
names one (issue 13): with it, no Kubernetes binaries, no operator image, no node.

``make -n`` prints the recipe lines ``make`` would run, without running them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL_CLUSTER = ("e2e/harness/build-k8s.sh", "e2e/harness/build-image.sh", "SUPERLOOP_E2E_NODE=1")


def _dry_run(target: str, kubeconfig: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("MAKE")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.mark.parametrize("target", ["test", "e2e"])
def test_kubeconfig_means_no_local_cluster(target: str) -> None:
    external = _dry_run(target, "/somewhere/kind-config")
    assert [step for step in LOCAL_CLUSTER if step in external] == []
    assert "pytest" in external
    local = _dry_run(target, None)
    assert [step for step in LOCAL_CLUSTER if step not in local] == []
