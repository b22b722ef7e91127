"""Promotion orchestrate core: validation order, forwarded argument lists, result and summary (§4)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.promotion import promotion_orchestrate
from superloop_ops.errors import ContractError

NOW = dt.datetime(2026, 3, 1, 12, 0, 5, tzinfo=dt.UTC)
GOVERNANCE = {
    "by": "ops",
    "approval_ref": "CAB-1",
    "rationale": "has spaces here",
    "review_by": "2026-04-01T00:00:00Z",
}
FILES = {
    "resultFile": "/r/o.json",
    "summaryFile": "/r/o.md",
    "promotionCiResultFile": "/r/ci.json",
    "promotionCiSummaryFile": "/r/ci.md",
}


def req(
    mode: str | None = "apply", apply_intent: str = "expand", expand_step: str = "25", **rest: Any
) -> promotion_orchestrate.OrchestrateRequest:
    fields = {**GOVERNANCE, **rest} if mode != "dry_run" else rest
    return promotion_orchestrate.build_orchestrate_request(
        mode=mode, apply_intent=apply_intent, expand_step=expand_step, **fields
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": None}, "--mode must be one of dry_run, apply, rollback"),
        ({"mode": "deploy", "apply_intent": "rollback"}, "--mode must be one of dry_run, apply, rollback"),
        ({"mode": "rollback", "apply_intent": "rollback"}, "--apply-intent must be one of expand, resume"),
        ({"mode": "dry_run", "expand_step": "0"}, "--expand-step must be an integer between 1 and 100"),
    ],
)
def test_validation_order(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError, match=f"^{message}$"):
        req(**kwargs)


@pytest.mark.parametrize("mode", ["apply", "rollback"])
def test_governance_required_in_order_for_mutating_modes(mode: str) -> None:
    for missing, flag in (
        ("by", "--by"),
        ("approval_ref", "--approval-ref"),
        ("rationale", "--rationale"),
        ("review_by", "--review-by"),
    ):
        fields = {**GOVERNANCE, missing: ""}
        with pytest.raises(ContractError, match=f"^{flag} is required for mode {mode}$"):
            promotion_orchestrate.build_orchestrate_request(
                mode=mode, apply_intent="expand", expand_step="25", **fields
            )
    with pytest.raises(ContractError, match=f"^--by is required for mode {mode}$"):
        promotion_orchestrate.build_orchestrate_request(mode=mode, apply_intent="expand", expand_step="25")


def test_dry_run_ignores_governance_and_rollback_accepts_resume() -> None:
    assert req("dry_run").by is None
    assert req("rollback", apply_intent="resume").apply_intent == "resume"


def test_ci_argv_forwards_only_what_is_set_in_order() -> None:
    request = req(
        "apply",
        fleet_status_file="status file.json",
        drill_state_file="d.json",
        window_executions="10",
        max_drill_age_hours="",
        skip_on_missing_evidence=True,
        fail_on_hold=True,
        trace_id="trace-01",
    )
    assert promotion_orchestrate.build_ci_argv(request, "/repo", "/r/ci.json", "/r/ci.md") == [
        "--repo", "/repo", "--result-file", "/r/ci.json", "--summary-file", "/r/ci.md",
        "--fleet-status-file", "status file.json",
        "--drill-state-file", "d.json",
        "--window-executions", "10",
        "--skip-on-missing-evidence", "--fail-on-hold",
        "--trace-id", "trace-01",
    ]  # fmt: skip
    assert promotion_orchestrate.build_ci_argv(req("dry_run"), "/repo", "a", "b") == [
        "--repo", "/repo", "--result-file", "a", "--summary-file", "b"
    ]  # fmt: skip


def test_apply_argv_per_mode() -> None:
    assert promotion_orchestrate.build_apply_argv(req("dry_run"), "/repo", "/r/ci.json") is None
    expand = promotion_orchestrate.build_apply_argv(
        req("apply", expand_step="30", idempotency_key="idmp-01", trace_id="t"), "/repo", "/r/ci.json"
    )
    assert expand == [
        "--repo", "/repo", "--promotion-state-file", "/r/ci.json", "--intent", "expand",
        "--by", "ops", "--approval-ref", "CAB-1", "--rationale", "has spaces here",
        "--review-by", "2026-04-01T00:00:00Z", "--expand-step", "30",
        "--idempotency-key", "idmp-01", "--trace-id", "t",
    ]  # fmt: skip
    resume = promotion_orchestrate.build_apply_argv(req("apply", apply_intent="resume"), "/repo", "c")
    assert resume is not None
    assert "--expand-step" not in resume
    assert resume[resume.index("--intent") + 1] == "resume"
    rollback = promotion_orchestrate.build_apply_argv(
        req("rollback", apply_intent="resume", expand_step="40"), "/repo", "c"
    )
    assert rollback is not None
    assert rollback[rollback.index("--intent") + 1] == "rollback"
    assert "--expand-step" not in rollback


def test_dry_run_result_and_summary() -> None:
    ci_result = {
        "summary": {
            "decision": "hold",
            "failedGates": ["manual_backlog"],
            "reasonCodes": ["promotion_manual_backlog_exceeded"],
        }
    }
    result = promotion_orchestrate.build_orchestrate_result(
        request=req("dry_run", idempotency_key="k-1"),
        ci_result=ci_result,
        apply_record=None,
        files=FILES,
        now=NOW,
    )
    assert result == {
        "schemaVersion": "v1",
        "timestamp": "2026-03-01T12:00:05Z",
        "mode": "dry_run",
        "status": "preview",
        "decision": "hold",
        "summary": {"failedGates": ["manual_backlog"], "reasonCodes": ["promotion_manual_backlog_exceeded"]},
        "apply": {"executed": False, "intent": None, "idempotencyKey": "k-1", "record": None},
        "files": FILES,
    }
    assert promotion_orchestrate.build_orchestrate_summary(result).splitlines() == [
        "## Ops Manager Promotion Orchestration",
        "",
        "Mode: `dry_run`",
        "",
        "Status: `preview`",
        "",
        "Promotion decision: `hold`",
        "",
        "Failed gates: manual_backlog",
        "",
        "Reason codes: promotion_manual_backlog_exceeded",
        "",
        "Result JSON: `/r/o.json`",
        "",
        "Promotion CI result: `/r/ci.json`",
    ]


def test_applied_result_uses_the_record_intent_and_summary_names_it() -> None:
    record = {"schemaVersion": "v1", "status": "applied", "intent": "expand", "replayed": True}
    ci_result = {"summary": {"decision": "skipped", "reasonCodes": ["promotion_ci_missing_evidence"]}}
    result = promotion_orchestrate.build_orchestrate_result(
        request=req("rollback"), ci_result=ci_result, apply_record=record, files=FILES, now=NOW
    )
    assert result["status"] == "rolled_back"
    assert result["apply"] == {"executed": True, "intent": "expand", "idempotencyKey": None, "record": record}
    assert result["summary"] == {"failedGates": [], "reasonCodes": ["promotion_ci_missing_evidence"]}
    lines = promotion_orchestrate.build_orchestrate_summary(result).splitlines()
    assert lines[10:14] == ["Reason codes: promotion_ci_missing_evidence", "", "Apply intent: `expand`", ""]
    assert "Failed gates: none" in lines


def test_unknown_decision_and_missing_intent() -> None:
    result = promotion_orchestrate.build_orchestrate_result(
        request=req("apply"), ci_result=[], apply_record={"intent": ""}, files=FILES, now=NOW
    )
    assert result["decision"] == "unknown"
    assert result["apply"]["intent"] is None
    assert result["status"] == "applied"
