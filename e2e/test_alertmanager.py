"""The ``alertmanager`` alert sink against a real Alertmanager (built by scripts/build-alertmanager.sh).

An escalation goes through the operator's dispatcher to ``/api/v2/alerts``; Alertmanager's own
API then shows the alert active with our labels until its ``endsAt``, and an escalation whose
``endsAt`` has passed is resolved (not active).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.component.test_alertmanager_sink import dispatch

from e2e.harness import controlplane

VERSION = os.environ.get("ALERTMANAGER_VERSION", "v0.28.1")
CACHE = Path(
    os.environ.get("SUPERLOOP_ALERTMANAGER_CACHE", Path.home() / ".cache" / "superloop-ops" / "alertmanager")
)
BINARY = CACHE / VERSION / "bin" / "alertmanager"
CONFIG = """
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    assert BINARY.is_file(), f"{BINARY} missing: run scripts/build-alertmanager.sh (make alertmanager)"
    (tmp_path / "am.yml").write_text(CONFIG)
    port = controlplane.find_free_port()
    proc = subprocess.Popen(
        [
            str(BINARY), f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, "alertmanager exited"
            assert time.monotonic() < deadline, "alertmanager did not become ready"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_escalations_reach_alertmanager_and_resolve_at_ends_at(alertmanager: str, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    state = dispatch(
        tmp_path / "active", alertmanager, now, now, labels={"team": "infra"}, resolveAfterSeconds=600
    )
    assert (state["status"], state["dispatchedCount"]) == ("success", 1)
    old = now - dt.timedelta(hours=2)
    dispatch(tmp_path / "resolved", alertmanager, old, old, labels={"team": "past"}, resolveAfterSeconds=60)
    alerts = _get(f"{alertmanager}/api/v2/alerts")
    (alert,) = [a for a in alerts if a["labels"].get("alertname") == "SuperloopLoopEscalation"]
    assert alert["labels"]["team"] == "infra"
    assert alert["labels"]["category"] == "health_critical"
    assert alert["status"]["state"] == "active"
    assert dt.datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")) == now + dt.timedelta(
        seconds=600
    )
    assert json.loads(alert["annotations"]["escalation"])["loopId"] == "demo-loop"
