"""Health verdicts on artifacts recorded from the real Superloop runtime (issue 11).

Each test installs one recorded scenario (tests/data/real-runtime/), runs one local reconcile
pass with a frozen clock placed relative to the recording, and checks what an operator would be
told. The shipped threshold catalog (balanced profile) is used, as the operator uses it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from helpers import real_runtime
from superloop_ops.clock import FrozenClock
from superloop_ops.core.loop import threshold_profiles
from superloop_ops.engine.loop import reconcile_pass, threshold_files

HOUR = 3600


def _balanced() -> threshold_profiles.Thresholds:
    catalog = str(threshold_files.default_catalog_path())
    return threshold_profiles.compute_thresholds(threshold_files.fetch_profile(catalog, "balanced"))


def _pass(scenario: str, tmp_path: Path, *offsets: float) -> tuple[reconcile_pass.ReconcileResult, Path]:
    """Install ``scenario`` and run one pass at each ``anchor + offset``; the last result."""
    installed = real_runtime.install(scenario, tmp_path / "repo")
    options = reconcile_pass.ReconcileOptions(
        repo=installed.repo, loop_id=real_runtime.LOOP, thresholds=_balanced(), trace_id=f"rr-{scenario}"
    )
    result = None
    for offset in offsets:
        result = reconcile_pass.run_reconcile(options, clock=FrozenClock(installed.at(offset)))
    assert result is not None
    assert result.ingest_ok, result.failure_message
    return result, installed.repo


def _reasons(result: reconcile_pass.ReconcileResult) -> dict[str, str]:
    return {reason["code"]: reason["severity"] for reason in result.health["reasons"]}


def _escalations(repo: Path) -> list[dict[str, Any]]:
    path = reconcile_pass.ops_dir_for(repo, real_runtime.LOOP) / "escalations.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("scenario", ["complete", "tests_fail_then_pass", "approval_approved"])
def test_a_completed_loop_stays_healthy_and_pages_no_one_after_an_hour(tmp_path: Path, scenario: str) -> None:
    result, repo = _pass(scenario, tmp_path, 5, 20 * 60, HOUR)
    assert result.health["status"] == "healthy"
    assert result.health["reasons"] == []
    assert result.health["metrics"]["runOutcome"] == "complete"
    assert result.health["metrics"]["ingestLagSeconds"] >= HOUR  # the lag is still reported
    assert _escalations(repo) == []


def test_an_approval_waiting_twenty_minutes_reminds_and_does_not_page(tmp_path: Path) -> None:
    early, _ = _pass("approval_waiting", tmp_path, 5 * 60)
    assert early.health["status"] == "healthy"
    assert _reasons(early) == {"approval_waiting": "info"}
    result, repo = _pass("approval_waiting", tmp_path, 5 * 60, 20 * 60)
    assert result.health["status"] == "degraded"
    assert _reasons(result) == {"approval_waiting": "degraded"}
    (reason,) = result.health["reasons"]
    assert (reason["metric"], reason["threshold"]) == ("approvalWaitSeconds", "900")
    assert int(reason["observed"]) >= 20 * 60
    assert [row["category"] for row in _escalations(repo)] == ["health_degraded"]
    later, repo = _pass("approval_waiting", tmp_path, 20 * 60, 8 * HOUR)
    assert later.health["status"] == "degraded"
    assert "health_critical" not in {row["category"] for row in _escalations(repo)}


def test_a_rejected_approval_that_asks_again_is_waiting(tmp_path: Path) -> None:
    result, _ = _pass("approval_rejected", tmp_path, 60)
    assert result.health["metrics"]["runOutcome"] == "awaiting_approval"
    assert _reasons(result) == {"approval_waiting": "info"}


def test_a_runner_failure_is_a_dead_run_on_the_next_pass(tmp_path: Path) -> None:
    result, repo = _pass("runner_failure", tmp_path, 30)
    assert result.state is not None
    assert result.state["projection"]["status"] == "running"  # what the reference stops at
    assert result.health["metrics"]["runOutcome"] == "dead"
    assert _reasons(result) == {"run_dead": "critical"}
    assert result.health["reasons"][0]["observed"] == "active_without_active_run"
    assert [row["category"] for row in _escalations(repo)] == ["health_critical"]


@pytest.mark.parametrize(
    ("scenario", "outcome", "code", "severity", "status"),
    [
        ("cancelled", "cancelled", "run_cancelled", "info", "healthy"),
        ("role_timeout", "timed_out", "run_timed_out", "degraded", "degraded"),
        ("max_iterations", "max_iterations", "run_max_iterations", "degraded", "degraded"),
        ("rate_limited", "rate_limited", "run_rate_limited", "degraded", "degraded"),
        ("stuck", "stuck", "run_stuck", "degraded", "degraded"),
    ],
)
def test_terminal_outcomes_show_as_such_and_never_go_stale(
    tmp_path: Path, scenario: str, outcome: str, code: str, severity: str, status: str
) -> None:
    result, _ = _pass(scenario, tmp_path, 30, HOUR)
    assert result.health["metrics"]["runOutcome"] == outcome
    assert _reasons(result) == {code: severity}
    assert result.health["status"] == status


def test_role_timeout_reason_names_the_role_and_budget(tmp_path: Path) -> None:
    result, _ = _pass("role_timeout", tmp_path, 30)
    (reason,) = result.health["reasons"]
    assert reason["observed"] == "tester after 5s"


def test_a_live_run_uses_liveness_from_what_the_runtime_writes(tmp_path: Path) -> None:
    result, _ = _pass("running", tmp_path, 5)
    metrics = result.health["metrics"]
    assert (result.health["status"], metrics["runOutcome"]) == ("healthy", "running")
    assert metrics["heartbeatLagSeconds"] is None  # the runtime writes no heartbeat
    assert metrics["livenessSource"] in {"state", "events", "active_run"}
    assert metrics["livenessLagSeconds"] <= 5
    stale, _ = _pass("running", tmp_path, HOUR)
    (reason,) = stale.health["reasons"]
    assert (reason["code"], reason["severity"], reason["metric"]) == (
        "ingest_stale",
        "critical",
        "livenessLagSeconds",
    )


def test_usage_and_cost_per_role_are_in_the_state(tmp_path: Path) -> None:
    result, _ = _pass("complete", tmp_path, 5)
    assert result.state is not None
    usage = result.state["signals"]["usage"]
    assert usage["calls"] == 4
    assert set(usage["byRole"]) == {"planner", "implementer", "tester", "reviewer"}
    assert usage["inputTokens"] == sum(role["inputTokens"] for role in usage["byRole"].values()) > 0
    assert usage["costUsd"] == pytest.approx(sum(role["costUsd"] for role in usage["byRole"].values()))
    assert usage["costUsd"] > 0
    assert usage["models"] == ["claude-sonnet-4-5-20250929"]
    assert result.state["signals"]["testStatus"]["ok"] is True


def test_rate_limit_and_stuck_documents_are_carried(tmp_path: Path) -> None:
    limited, _ = _pass("rate_limited", tmp_path, 5)
    assert limited.state is not None
    assert limited.health["reasons"][0]["observed"] == "implementer, resets in 120s"
    assert limited.state["signals"]["rateLimit"]["role"] == "implementer"
    stuck, _ = _pass("stuck", tmp_path / "stuck", 5)
    assert stuck.state is not None
    assert stuck.state["signals"]["stuck"]["reason"] == "same_test_failures"
    assert stuck.state["signals"]["lastEvent"]["data"]["reason"] == "stuck"


def test_a_moved_and_renamed_recording_reads_the_same(tmp_path: Path) -> None:
    """What e2e does on a real clock: the recording moved to end an hour ago, under another id."""
    end = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    installed = real_runtime.install("approval_waiting", tmp_path / "repo", loop_id="rr-x", end_at=end)
    assert installed.anchor == end
    events = real_runtime.events(installed.repo, "rr-x")
    assert {e["loop_id"] for e in events} == {"rr-x"}
    assert events[-1]["timestamp"] <= "2030-01-02T03:04:05Z"
    options = reconcile_pass.ReconcileOptions(repo=installed.repo, loop_id="rr-x", thresholds=_balanced())
    result = reconcile_pass.run_reconcile(options, clock=FrozenClock(installed.at(20 * 60)))
    assert result.ingest_ok, result.failure_message
    assert {r["code"]: r["severity"] for r in result.health["reasons"]} == {"approval_waiting": "degraded"}


def test_usage_is_read_again_when_the_file_grows(tmp_path: Path) -> None:
    installed = real_runtime.install("complete", tmp_path / "repo")
    options = reconcile_pass.ReconcileOptions(
        repo=installed.repo, loop_id=real_runtime.LOOP, thresholds=_balanced()
    )
    first = reconcile_pass.run_reconcile(options, clock=FrozenClock(installed.at(5)))
    usage_file = installed.repo / ".superloop" / "loops" / real_runtime.LOOP / "usage.jsonl"
    row = json.loads(usage_file.read_text().splitlines()[0])
    with usage_file.open("a") as handle:
        handle.write(json.dumps({**row, "role": "planner", "cost_usd": 1.5}) + "\n")
    second = reconcile_pass.run_reconcile(options, clock=FrozenClock(installed.at(10)))
    assert first.state is not None
    assert second.state is not None
    before, after = first.state["signals"]["usage"], second.state["signals"]["usage"]
    assert (before["calls"], after["calls"]) == (4, 5)
    assert after["byRole"]["planner"]["calls"] == 2
    assert after["costUsd"] == pytest.approx(before["costUsd"] + 1.5)
