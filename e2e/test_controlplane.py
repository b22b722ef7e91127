"""The harness itself: the CLI the README demo uses, identities, and no orphans on any exit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import controlplane

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir() -> Iterator[Path]:
    """On tmpfs, so etcd keeps its data inside it and nothing outlives the test, even a SIGKILL."""
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="superloop-cli-", dir=shm if shm.is_dir() else None))
    yield root / "k8s"
    shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def _start_cli(workdir: Path) -> tuple[subprocess.Popen[str], Path]:
    if os.environ.get("KUBECONFIG") and controlplane.missing_binaries(controlplane.fetch_bin_dir()):
        pytest.skip("running against $KUBECONFIG without the project's binaries: nothing of ours to test")
    proc = subprocess.Popen(
        [sys.executable, "-m", "e2e.harness.controlplane", "up", "--dir", str(workdir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # blocks until ready (or the CLI fails and closes stdout)
    if not line.startswith("KUBECONFIG="):
        proc.kill()
        pytest.fail(f"control plane CLI failed: {line}\n{proc.communicate(timeout=30)[1]}")
    return proc, Path(line.removeprefix("KUBECONFIG="))


def _wait_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return [pid for pid in pids if _alive(pid)]


def test_cli_serves_three_identities_and_stops_everything_on_sigint(workdir: Path) -> None:
    proc, kubeconfig = _start_cli(workdir)
    pids = list(json.loads((workdir / "pids.json").read_text()).values())
    try:
        assert kubeconfig == workdir / "kubeconfig"
        assert kubeconfig.stat().st_mode & 0o077 == 0
        kubectl = [str(controlplane.fetch_bin_dir() / "kubectl"), f"--kubeconfig={kubeconfig}"]
        for context, expected in [("admin", "admin"), ("alice", "alice"), ("bob", "bob")]:
            who = subprocess.run(
                [*kubectl, "--context", context, "auth", "whoami", "-o", "json"],
                capture_output=True, text=True, check=True, timeout=30,
            )  # fmt: skip
            info = json.loads(who.stdout)["status"]["userInfo"]
            assert info["username"] == expected
            assert ("system:masters" in info.get("groups", [])) is (context == "admin")
        denied = subprocess.run(
            [*kubectl, "--context", "alice", "get", "secrets", "-n", "default"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert denied.returncode != 0
        assert "forbidden" in denied.stderr.lower()
        version = subprocess.run(
            [*kubectl, "version", "-o", "json"], capture_output=True, text=True, check=True
        )
        assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == controlplane.DEFAULT_K8S_VERSION
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert _wait_gone(pids) == []


def test_components_die_with_a_killed_parent(workdir: Path) -> None:
    proc, _ = _start_cli(workdir)
    pids = list(json.loads((workdir / "pids.json").read_text()).values())
    assert len(pids) == 3
    proc.kill()  # no cleanup code runs: only the parent-death signal can stop the children
    proc.wait(timeout=30)
    left = _wait_gone(pids)
    for pid in left:  # never leave them behind, even when the assertion below fails
        os.kill(pid, signal.SIGKILL)
    assert left == []
