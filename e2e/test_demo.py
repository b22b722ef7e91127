"""`make demo`, the product's main job, runs and shows what it promises.

The demo starts its own control plane (it is what a newcomer runs on a fresh clone), so this test
needs the locally built binaries: with ``KUBECONFIG`` pointing at another cluster nothing local is
built and the test does not apply (CI runs it: it sets no ``KUBECONFIG``). The demo's default
mode, the operator in its Pod on a node, would start a second kubelet beside the session's; its
chart path is covered by ``test_in_cluster.py``, and this test runs the ``--local-operator`` mode.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
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


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children of children too)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in map(int, task.read_text().split()):
                    if child not in found:
                        found.add(child)
                        todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_demo_stopped_by_a_signal_leaves_no_process_behind(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM (CI, ``timeout``, a closed session) and SIGINT stop the demo as Ctrl-C does: the
    simulator, the sprite service, the operator and the control plane go with it. SIGINT is sent
    to a demo started in the background, where a shell leaves SIGINT ignored."""
    demo = subprocess.Popen(
        [sys.executable, "scripts/demo.py", "--local-operator", "--refresh", "60",
         "--workdir", str(tmp_path / "demo")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    assert demo.stdout is not None
    shown: list[str] = []
    for line in demo.stdout:
        shown.append(line)
        if line.startswith("operator started"):
            break
    else:
        pytest.fail("".join(shown))
    started = _descendants(demo.pid)
    assert len(started) >= 5, started  # etcd, apiserver, controller manager, simulator, service, operator
    demo.send_signal(sig)
    try:
        demo.wait(timeout=60)
    except subprocess.TimeoutExpired:
        demo.kill()
        pytest.fail(f"the demo did not stop on {sig.name}")
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.3)
    left = {pid: _cmdline(pid) for pid in started if _alive(pid)}
    for pid in left:  # do not leave them to the next test either
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == {}, f"still running after {sig.name}"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:100]
    except OSError:
        return "?"
