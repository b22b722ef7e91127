"""`make demo`, the product's main job, runs and shows what it promises.

The demo starts its own control plane (it is what a newcomer runs on a fresh clone), so this test
needs the locally built binaries: with ``KUBECONFIG`` pointing at another cluster nothing local is
built and the test does not apply (CI runs it: it sets no ``KUBECONFIG``). The demo's default
mode, the operator in its Pod on a node, would start a second kubelet beside the session's; its
chart path is covered by ``test_in_cluster.py``, and this test runs the ``--local-operator`` mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KUBECONFIG")), reason="the demo builds its own cluster; KUBECONFIG names another"
)


def test_a_timed_demo_ends_with_every_loop_and_the_fleet_ready_and_intents_proposed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/demo.py", "--local-operator", "--duration", "45", "--refresh", "15",
         "--workdir", str(tmp_path / "demo")],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    shown = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, shown
    assert "demo check: 6 Loops and the Fleet Ready" in done.stdout, shown
    assert "demo-fleet-demo-3-health-critical-cancel" in done.stdout, shown
    assert "every process it started has been stopped" in done.stdout
