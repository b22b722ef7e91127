"""The run outcome table and its reasons (core.run_outcome, issue 11)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.loop import run_outcome
from superloop_ops.core.loop.threshold_profiles import LifecyclePolicy

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def state(projected: str, /, *, signals: dict[str, Any] | None = None, **last: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"projection": {"status": projected}}
    if signals is not None or last:
        document["signals"] = {
            "stateFilePresent": True,
            "activeRunPresent": True,
            **(signals or {}),
            "lastEvent": last or None,
        }
    return document


@pytest.mark.parametrize(
    ("document", "outcome"),
    [
        (state("running"), "running"),  # no signals: as projected
        (state("running", name="role_start"), "running"),
        (state("running", signals={"activeRunPresent": False}, name="role_start"), "dead"),
        (state("running", signals={"activeRunPresent": False}, name="rate_limit_stop",
               status="rate_limited"), "rate_limited"),
        (state("stopped", name="loop_stop", data={"reason": "max_iterations"}), "max_iterations"),
        (state("stopped", name="loop_stop", data={"reason": "stuck"}), "stuck"),
        (state("stopped", name="loop_stop", data={"reason": "other"}), "stopped"),
        (state("stopped", name="no_progress_stop"), "stopped"),
        (state("failed", name="role_timeout", status="timeout"), "timed_out"),
        (state("failed", name="role_end", status="error"), "failed"),
        (state("unknown", signals={"stateFilePresent": False, "activeRunPresent": False}, name="role_start"),
         "cancelled"),
        (state("unknown", signals={"stateFilePresent": False}, name="loop_complete"), "unknown"),
        (state("unknown", signals={"stateFilePresent": False}, name="approval_rejected"), "cancelled"),
        (state("complete", name="loop_complete"), "complete"),
        (state("awaiting_approval", name="approval_requested"), "awaiting_approval"),
        (state("idle", name="approval_decision"), "idle"),
    ],
)
def test_outcome_table(document: dict[str, Any], outcome: str) -> None:
    assert run_outcome.compute_outcome(document) == outcome


@pytest.mark.parametrize(
    ("age", "policy", "severity"),
    [
        (899, LifecyclePolicy(), "info"),
        (900, LifecyclePolicy(), "degraded"),
        (10 * 86400, LifecyclePolicy(), "degraded"),
        (3600, LifecyclePolicy(approval_critical_seconds=3600), "critical"),
    ],
)
def test_approval_waiting_tiers(age: int, policy: LifecyclePolicy, severity: str) -> None:
    requested = format_ts(NOW - dt.timedelta(seconds=age))
    document = state("awaiting_approval", signals={"approvalRequestedAt": requested})
    (reason,) = run_outcome.compute_outcome_reasons("awaiting_approval", document, policy, NOW)
    assert (reason["code"], reason["severity"]) == ("approval_waiting", severity)
    assert reason["observed"] == str(age)


def test_stop_severity_comes_from_the_policy() -> None:
    policy = LifecyclePolicy(stop_severity={"run_dead": "degraded"})
    (reason,) = run_outcome.compute_outcome_reasons("dead", state("running"), policy, NOW)
    assert (reason["code"], reason["severity"]) == ("run_dead", "degraded")
    assert run_outcome.compute_outcome_reasons("complete", state("complete"), policy, NOW) == []
    assert run_outcome.compute_outcome_reasons("running", state("running"), policy, NOW) == []
