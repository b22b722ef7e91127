"""A local approve killed (SIGKILL) before each of its writes, then run again (issue 10, item 12).

Real processes: the ``control`` CLI runs with ``SUPERLOOP_OPS_CRASH_AT=<point>`` and kills itself
at that point; the same command (same idempotency key) then runs without it. Whatever the point,
the decision is applied exactly once and every record of it exists exactly once: approval.json,
the decisions.jsonl row, the decisions.md block, the approval_decision event; the intents row is
the last write, and the audit rows (control.jsonl, control-invocations.jsonl) are never dropped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from superloop_ops.journal import crash_points

LOOP = "demo-loop"
KEY = "approve-crash-1"


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    loop_dir = repo / ".superloop" / "loops" / LOOP
    loop_dir.mkdir(parents=True)
    event = {
        "timestamp": "2026-01-01T00:00:00Z",
        "event": "approval_requested",
        "loop_id": LOOP,
        "run_id": "r1",
    }
    (loop_dir / "events.jsonl").write_text(json.dumps(event) + "\n")
    approval = {"status": "pending", "run_id": "r1", "iteration": 3, "requested_at": "2026-01-01T00:00:00Z"}
    (loop_dir / "approval.json").write_text(json.dumps(approval))
    return repo


def _approve(repo: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != crash_points.ENV}
    if crash_at is not None:
        env[crash_points.ENV] = crash_at
    argv = [sys.executable, "-m", "superloop_ops.cli.main", "control", "--repo", str(repo), "--loop", LOOP]
    argv += ["--intent", "approve", "--by", "alice", "--note", "ship it", "--idempotency-key", KEY]
    argv += ["--timeout-seconds", "1", "--interval-seconds", "1"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def _rows(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("point", crash_points.CONTROL_POINTS)
def test_a_local_approve_killed_at_each_write_is_completed_once(tmp_path: Path, point: str) -> None:
    repo = _repo(tmp_path)
    crashed = _approve(repo, point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    again = _approve(repo, None)
    # Approve is confirmed only once the runtime completes, which this repository never does:
    # exit 2 (ambiguous), as for a run that was never killed.
    assert again.returncode == 2, again.stdout + again.stderr
    loop_dir = repo / ".superloop" / "loops" / LOOP
    ops = repo / ".superloop" / "ops-manager" / LOOP
    approval = json.loads((loop_dir / "approval.json").read_text())
    assert approval["status"] == "approved"
    assert approval["decision"]["by"] == "alice"
    decisions = _rows(loop_dir / "decisions.jsonl")
    assert [row["decision"] for row in decisions] == ["approved"]
    assert (loop_dir / "decisions.md").read_text().count("## ") == 1
    events = [row for row in _rows(loop_dir / "events.jsonl") if row["event"] == "approval_decision"]
    assert [(row["status"], row["data"]["by"]) for row in events] == [("approved", "alice")]  # type: ignore[index]
    intents = [row for row in _rows(ops / "intents.jsonl") if row["idempotencyKey"] == KEY]
    assert intents
    assert intents[-1]["status"] == "ambiguous"
    assert intents[-1]["confirm"]["observedApprovalStatus"] == "approved"  # type: ignore[index]
    # every invocation that got as far as recording left its audit rows: none is dropped
    for name in ("control.jsonl", "control-invocations.jsonl"):
        assert len([row for row in _rows(ops / "telemetry" / name) if row["idempotencyKey"] == KEY]) >= len(
            intents
        )
