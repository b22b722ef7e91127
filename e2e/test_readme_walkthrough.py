"""The README's cluster walkthrough ("In a cluster"), run as written against the control plane.

Every line of that block runs in a shell whose PATH has the cluster's ``kubectl`` and ``helm``
and this checkout's ``kubectl-superloop`` (so ``kubectl superloop`` goes through kubectl's own
plugin lookup); ``KUBECONFIG`` points at the control plane. Two things a real cluster does are
done by the test instead: ``pipx install .`` (the plugin comes from this checkout: the line is
shown, not run) and the Deployment's pod: after ``helm install`` the operator runs as a local
process under the release's ServiceAccount, with the claim ``demo-repo`` mapped to a directory
where a simulated runtime writes the loop ``demo-loop`` under ``workspace/``, as the chart's
``loopClaims`` would mount it. Since the test runs that operator, the ``helm install`` line gets
``--set replicaCount=0``: on a cluster whose nodes run Pods (the e2e node, kind, a real cluster
through ``$KUBECONFIG``) the chart's own Pod would otherwise act on the same objects at once.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.identities import write_service_account_kubeconfig
from e2e.operator_harness import build_operator_env, launch_operator, terminate
from superloop_ops.clock import SystemClock
from superloop_ops.sim.simulator import Simulator

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
NAMESPACE, RELEASE, RELEASE_NS = "demo", "superloop-ops", "superloop-system"


def walkthrough_lines() -> list[str]:
    """The commands of the first ``sh`` block under "### In a cluster" (comments dropped)."""
    text = README.read_text()
    section = text.split("### In a cluster", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block, "README has no sh block under 'In a cluster'"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


class _Runtime:
    """The simulated agent run behind the claim: ticks until stopped."""

    def __init__(self, root: Path) -> None:
        self.sim = Simulator(
            root, SystemClock(), loops=1, scenarios=["running"], shared_repo=True, loop_ids=["demo-loop"]
        )
        self.sim.step()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sim.step()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def shell_env(cluster: Cluster, tmp_path: Path) -> Iterator[dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (cluster.kubectl_bin, cluster.helm_bin):
        (bin_dir / Path(tool).name).symlink_to(tool)
    plugin = bin_dir / "kubectl-superloop"
    plugin.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m superloop_ops.cli.kubectl_plugin "$@"\n'
    )
    plugin.chmod(0o755)
    env = cluster.env()
    env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    if not cluster.external:
        env["KUBECONFIG"] = str(cluster.kubeconfig)
        subprocess.run(
            [cluster.kubectl_bin, "config", "use-context", cluster.contexts["admin"]], env=env, check=True
        )
    try:
        yield env
    finally:
        cluster.helm("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", check=False)
        for ns in (NAMESPACE, RELEASE_NS):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_readme_cluster_walkthrough_works_as_written(
    cluster: Cluster, shell_env: dict[str, str], tmp_path: Path
) -> None:
    lines = walkthrough_lines()
    assert lines[0].startswith("helm install")
    assert any(
        line.startswith("kubectl superloop wait") for line in lines
    )
    claim = tmp_path / "loops" / "demo-repo"
    runtime = _Runtime(claim / "workspace")
    operator: list[subprocess.Popen[bytes]] = []
    transcript: list[str] = []
    try:
        for line in lines:
            if line.startswith("pipx install"):
                continue  # the plugin is on PATH from this checkout
            result = subprocess.run(
                ["bash", "-c", _as_the_test_runs_it(line)],
                cwd=REPO,
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            transcript.append(f"$ {line}\n{result.stdout}{result.stderr}")
            assert result.returncode == 0, "\n".join(transcript)
            if line.startswith("helm install"):
                _assert_no_operator_pod(cluster)
                _start_operator(cluster, tmp_path, claim, operator.append)
    finally:
        for proc in operator:
            terminate(proc, timeout=20)
        runtime.stop()
    shown = "\n".join(transcript)
    assert "condition met" in shown
    assert "approved by" in shown
    assert re.search(r"cancel-demo-loop\s+True\s", shown), shown


def _as_the_test_runs_it(line: str) -> str:
    """The line as the shell runs it: ``helm install`` without a replica (the test's operator acts)."""
    return f"{line} --set replicaCount=0" if line.startswith("helm install") else line


def _assert_no_operator_pod(cluster: Cluster) -> None:
    """Only the test's operator acts: the release's Deployment asks for no Pod."""
    replicas = cluster.kubectl(
        "get", "deployment", RELEASE, "-n", RELEASE_NS, "-o", "jsonpath={.spec.replicas}"
    ).stdout
    assert replicas == "0", f"the chart's Deployment asks for {replicas} replicas beside the test's operator"


def _start_operator(
    cluster: Cluster, tmp_path: Path, claim: Path, track: Callable[[subprocess.Popen[bytes]], None]
) -> None:
    """What the release's pod would run: the operator under the chart's ServiceAccount; ``track``
    sees it before the health wait, so the test stops it even when it never becomes healthy."""
    account = write_service_account_kubeconfig(cluster, RELEASE_NS, RELEASE, tmp_path / "sa.kubeconfig")
    env = build_operator_env(
        account.path, tmp_path / "state", tmp_path / "mounts", confirm_timeout_seconds=30,
        SUPERLOOP_PVC_DIRS=f"{NAMESPACE}/demo-repo={claim}",
    )  # fmt: skip
    launch_operator(NAMESPACE, env, tmp_path / "operator.log", track)
