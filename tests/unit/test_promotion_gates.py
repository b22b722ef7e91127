"""Promotion gates core: the five gates, the decision, the document and the CI renderings.

Frozen ``NOW``; evidence timestamps are fixed past instants relative to it. The bats scenarios of
``ops-manager-promotion-gates.bats`` are ported as pure evaluations here (their file-writing side
is covered again end to end in ``tests/component/test_promotion_cli.py``), followed by the extra
regression tests the contract recommends (§6.5) and edge rules of §1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.promotion import promotion_gates
from superloop_ops.errors import ContractError

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
ALL_PATHS = ("policyGated", "rolloutGated", "governanceGated", "transportGated")


def hours_ago(hours: float) -> str:
    return format_ts(NOW - dt.timedelta(hours=hours))


def status_doc(
    *,
    posture: str = "active",
    blocks: bool = False,
    codes: list[Any] | None = None,
    backlog: Any = 2,
    autopause: Any = False,
    paths: tuple[str, ...] = ALL_PATHS,
    enabled: Any = True,
) -> dict[str, Any]:
    return {
        "schemaVersion": "v1",
        "autonomous": {
            "enabled": enabled,
            "governance": {"posture": posture, "blocksAutonomous": blocks, "reasonCodes": codes or []},
            "outcomeRollup": {"manual_backlog": backlog},
            "rollout": {"autopause": {"active": autopause}},
            "safetyGateDecisions": {"byPath": {path: {"blockedCount": 0} for path in paths}},
        },
    }


def handoff_text(
    runs: int, attempted: int = 1, executed: int = 1, ambiguous: int = 0, failed: int = 0
) -> str:
    row = {
        "category": "fleet_handoff_execute",
        "execution": {
            "mode": "autonomous",
            "requestedIntentCount": attempted,
            "executedCount": executed,
            "ambiguousCount": ambiguous,
            "failedCount": failed,
        },
    }
    return "".join(json.dumps(row) + "\n" for _ in range(runs))


def drill_text(status: str = "pass", completed_at: Any = None, **overrides: Any) -> str:
    drills = []
    for drill_id in promotion_gates.REQUIRED_DRILLS:
        entry = {"id": drill_id, "status": status, "completedAt": completed_at or hours_ago(1)}
        entry.update(overrides.get(drill_id, {}))
        drills.append(entry)
    return json.dumps({"schemaVersion": "v1", "updatedAt": hours_ago(1), "drills": drills})


SOURCES = promotion_gates.GateSources(
    repo_path="/abs/repo",
    fleet_status_file="status.json",
    handoff_telemetry_file="handoff.jsonl",
    drill_state_file="drills.json",
    promotion_state_file="/abs/repo/state.json",
    promotion_telemetry_file="/abs/repo/promotion.jsonl",
)


def evaluate(
    status: Any = None,
    handoff: str | None = "default",
    drills: str | None = "default",
    thresholds: promotion_gates.GateThresholds | None = None,
) -> promotion_gates.PromotionEvaluation:
    return promotion_gates.build_promotion_evaluation(
        status=status_doc() if status is None else status,
        handoff=promotion_gates.build_handoff_evidence(handoff_text(20) if handoff == "default" else handoff),
        drills=promotion_gates.build_drill_evidence(drill_text() if drills == "default" else drills),
        thresholds=thresholds or promotion_gates.GateThresholds(),
        sources=SOURCES,
        trace_id="trace-1",
        now=NOW,
    )


def gate(evaluation: promotion_gates.PromotionEvaluation, key: str) -> dict[str, Any]:
    result: dict[str, Any] = evaluation.document["gates"][key]
    return result


# ---------------------------------------------------------------------------------------------
# bats ports (ops-manager-promotion-gates.bats 1-6, decision side)


def test_promotes_when_all_gates_pass() -> None:
    evaluation = evaluate()
    summary = evaluation.document["summary"]
    assert summary == {
        "decision": "promote",
        "promote": True,
        "gatePassCount": 5,
        "gateFailCount": 0,
        "failedGates": [],
        "reasonCodes": [],
    }
    assert evaluation.promote


def test_holds_when_governance_authority_missing() -> None:
    evaluation = evaluate(
        status_doc(
            posture="authority_missing", blocks=True, codes=["autonomous_governance_authority_missing"]
        )
    )
    assert evaluation.decision == "hold"
    assert evaluation.failed_gates == ("governance",)
    assert list(evaluation.reason_codes) == [
        "promotion_governance_authority_missing",
        "promotion_governance_blocks_autonomous",
        "promotion_governance_posture_not_active",
    ]
    # Gate-level reasons keep evaluation order; the summary is sorted.
    assert gate(evaluation, "governance")["reasons"] == [
        "promotion_governance_posture_not_active",
        "promotion_governance_blocks_autonomous",
        "promotion_governance_authority_missing",
    ]


def test_holds_when_autonomous_sample_below_minimum() -> None:
    evaluation = evaluate(handoff=handoff_text(3))
    assert evaluation.failed_gates == ("outcome_reliability",)
    assert evaluation.reason_codes == ("promotion_autonomous_sample_insufficient",)


def test_holds_when_autopause_active_and_suppression_paths_incomplete() -> None:
    evaluation = evaluate(status_doc(autopause=True, paths=ALL_PATHS[:3]))
    assert evaluation.failed_gates == ("safety_suppression",)
    detail = gate(evaluation, "safetySuppression")
    assert detail["reasons"] == ["promotion_autopause_active", "promotion_suppression_paths_missing"]
    assert detail["missingPaths"] == ["transportGated"]


def test_fails_closed_when_drill_evidence_missing() -> None:
    evaluation = evaluate(drills=None)
    assert evaluation.failed_gates == ("drill_recency",)
    assert evaluation.reason_codes == ("promotion_drill_state_missing",)
    assert gate(evaluation, "drillRecency")["drills"] == []


def test_manual_backlog_over_limit_holds() -> None:
    evaluation = evaluate(status_doc(backlog=10))
    assert evaluation.decision == "hold"
    assert evaluation.reason_codes == ("promotion_manual_backlog_exceeded",)
    assert gate(evaluation, "manualBacklog") == {
        "status": "fail",
        "reasons": ["promotion_manual_backlog_exceeded"],
        "manualBacklog": 10,
    }


# ---------------------------------------------------------------------------------------------
# §6.5 recommended regression tests


@pytest.mark.parametrize(
    ("completed_at", "status"),
    [("not-a-time", "pass"), (12345, "pass"), ("2026-03-01T08:00:00.000Z", "failed"), ("absent", "pass")],
)
def test_bad_drill_timestamp_fails_closed(completed_at: Any, status: str) -> None:
    document = json.loads(drill_text())
    entry = document["drills"][0]
    entry["status"] = status
    if completed_at == "absent":
        del entry["completedAt"]
    else:
        entry["completedAt"] = completed_at
    evaluation = evaluate(drills=json.dumps(document))
    assert evaluation.decision == "hold"
    expected = ["promotion_drill_timestamp_invalid_kill_switch"]
    if status != "pass":
        expected.insert(0, "promotion_drill_not_passed_kill_switch")
    assert gate(evaluation, "drillRecency")["reasons"] == expected


def test_bad_timestamp_keeps_other_drills_reasons() -> None:
    text = drill_text(
        kill_switch={"completedAt": "bad"},
        sprite_service_outage={"status": "failed", "completedAt": hours_ago(500)},
        ambiguous_retry_guard={"completedAt": "2026-03-01T08:00:00.5Z"},
    )
    reasons = gate(evaluate(drills=text), "drillRecency")["reasons"]
    assert reasons == [
        "promotion_drill_timestamp_invalid_kill_switch",
        "promotion_drill_not_passed_sprite_service_outage",
        "promotion_drill_stale_sprite_service_outage",
        "promotion_drill_timestamp_invalid_ambiguous_retry_guard",
    ]


@pytest.mark.parametrize("text", ["", "   \n", "{not json", "5", '"text"', '{"drills": {"kill_switch": {}}}'])
def test_empty_or_malformed_drill_evidence_is_invalid(text: str) -> None:
    evaluation = evaluate(drills=text)
    assert gate(evaluation, "drillRecency")["reasons"] == ["promotion_drill_state_invalid"]
    assert evaluation.decision == "hold"


@pytest.mark.parametrize("text", ["null", "{}", '{"drills": null}', '{"drills": false}'])
def test_drill_document_without_drills_reports_each_missing(text: str) -> None:
    reasons = gate(evaluate(drills=text), "drillRecency")["reasons"]
    assert reasons == [f"promotion_drill_missing_{drill_id}" for drill_id in promotion_gates.REQUIRED_DRILLS]


def test_autopause_false_falls_through_to_state_flag() -> None:
    status = status_doc()
    status["autonomous"]["rollout"] = {"autopause": {"active": False}, "state": {"autoPauseActive": True}}
    evaluation = evaluate(status)
    assert gate(evaluation, "safetySuppression")["autopauseActive"] is True
    assert evaluation.reason_codes == ("promotion_autopause_active",)


def test_attempts_zero_and_rates_at_the_limit() -> None:
    zero = evaluate(handoff=handoff_text(20, attempted=0, executed=0))
    assert zero.reason_codes == ("promotion_autonomous_attempts_zero",)
    # 4 of 20 = 0.2 exactly: equal to the threshold passes (strict comparison).
    rows = handoff_text(16) + handoff_text(4, ambiguous=1, failed=1, executed=0)
    at_limit = evaluate(handoff=rows)
    detail = gate(at_limit, "outcomeReliability")
    assert (detail["ambiguityRate"], detail["failureRate"]) == (0.2, 0.2)
    assert at_limit.promote
    over = evaluate(
        handoff=rows,
        thresholds=promotion_gates.GateThresholds(max_ambiguity_rate=0.19, max_failure_rate=0.19),
    )
    assert over.reason_codes == (
        "promotion_autonomous_ambiguity_rate_exceeded",
        "promotion_autonomous_failure_rate_exceeded",
    )


def test_window_takes_last_autonomous_runs_only() -> None:
    noise = [
        {"category": "fleet_handoff_plan", "execution": {"mode": "autonomous", "requestedIntentCount": 9}},
        {"category": "fleet_handoff_execute", "execution": {"mode": "manual", "requestedIntentCount": 9}},
        7,
        "text",
    ]
    bad_old = handoff_text(5, attempted=3, ambiguous=3, executed=0)
    text = bad_old + "".join(json.dumps(row) + "\n" for row in noise) + handoff_text(20)
    evaluation = evaluate(handoff=text)
    detail = gate(evaluation, "outcomeReliability")
    assert detail["sampleRuns"] == 20
    assert detail["attempted"] == 20
    assert detail["ambiguous"] == 0
    assert evaluation.promote


def test_stream_parsing_accepts_any_whitespace_layout() -> None:
    text = (
        handoff_text(10).replace("\n", " ")
        + '\n{"category":\n"fleet_handoff_execute","execution":{"mode":"autonomous"}}'
    )
    evidence = promotion_gates.build_handoff_evidence(text)
    assert evidence.state == "ok"
    assert len(evidence.records) == 11


def test_corrupt_handoff_discards_the_whole_history() -> None:
    evaluation = evaluate(handoff=handoff_text(20) + "{torn\n")
    assert gate(evaluation, "outcomeReliability")["reasons"] == [
        "promotion_handoff_telemetry_invalid",
        "promotion_autonomous_sample_insufficient",
    ]
    assert gate(evaluation, "outcomeReliability")["sampleRuns"] == 0


def test_missing_and_empty_handoff() -> None:
    missing = evaluate(handoff=None)
    assert gate(missing, "outcomeReliability")["reasons"] == [
        "promotion_handoff_telemetry_missing",
        "promotion_autonomous_sample_insufficient",
    ]
    empty = evaluate(handoff="")
    assert gate(empty, "outcomeReliability")["reasons"] == ["promotion_autonomous_sample_insufficient"]


def test_window_smaller_than_min_sample_never_passes() -> None:
    evaluation = evaluate(thresholds=promotion_gates.GateThresholds(window_executions=5, min_sample_size=10))
    assert evaluation.reason_codes == ("promotion_autonomous_sample_insufficient",)


def test_rates_are_unrounded() -> None:
    rows = handoff_text(19) + handoff_text(1, attempted=2, ambiguous=1, executed=1)
    detail = gate(evaluate(handoff=rows), "outcomeReliability")
    assert detail["ambiguityRate"] == 1 / 21


# ---------------------------------------------------------------------------------------------
# gate rules of §1.3


@pytest.mark.parametrize(
    ("enabled", "fails"), [(True, False), ("yes", False), (0, False), (None, True), (False, True)]
)
def test_enabled_uses_coalesce_not_truthiness(enabled: Any, fails: bool) -> None:
    reasons = gate(evaluate(status_doc(enabled=enabled)), "governance")["reasons"]
    assert ("promotion_policy_mode_not_guarded_auto" in reasons) is fails


def test_review_due_soon_blocks_and_codes_are_echoed_sorted() -> None:
    codes = ["zz_other", "autonomous_governance_review_expired", 3, "autonomous_governance_review_expired"]
    detail = gate(evaluate(status_doc(posture="review_due_soon", codes=codes)), "governance")
    assert detail["reasons"] == [
        "promotion_governance_posture_not_active",
        "promotion_governance_review_expired",
    ]
    assert detail["reasonCodes"] == ["3", "autonomous_governance_review_expired", "zz_other"]


def test_missing_autonomous_section_fails_every_status_gate() -> None:
    evaluation = evaluate({"schemaVersion": "v1"})
    assert evaluation.failed_gates == ("governance", "manual_backlog", "safety_suppression")
    assert gate(evaluation, "governance")["posture"] is None
    assert gate(evaluation, "governance")["blocksAutonomous"] is False
    assert gate(evaluation, "safetySuppression")["byPath"] is None
    assert gate(evaluation, "safetySuppression")["missingPaths"] == list(
        promotion_gates.REQUIRED_SUPPRESSION_PATHS
    )


@pytest.mark.parametrize(
    ("backlog", "reason"),
    [
        (0, None),
        (5, None),
        (6, "exceeded"),
        (None, "unavailable"),
        (False, "unavailable"),
        ("7", "unavailable"),
    ],
)
def test_manual_backlog_values(backlog: Any, reason: str | None) -> None:
    reasons = gate(evaluate(status_doc(backlog=backlog)), "manualBacklog")["reasons"]
    assert reasons == ([] if reason is None else [f"promotion_manual_backlog_{reason}"])


def test_drill_staleness_boundary_and_future_and_first_entry_wins() -> None:
    exact = drill_text(completed_at=hours_ago(168))
    assert gate(evaluate(drills=exact), "drillRecency")["reasons"] == []
    stale = drill_text(completed_at=format_ts(NOW - dt.timedelta(hours=168, seconds=1)))
    assert gate(evaluate(drills=stale), "drillRecency")["reasons"] == [
        f"promotion_drill_stale_{drill_id}" for drill_id in promotion_gates.REQUIRED_DRILLS
    ]
    future = drill_text(completed_at=format_ts(NOW + dt.timedelta(hours=3)))
    assert gate(evaluate(drills=future), "drillRecency")["reasons"] == []
    document = json.loads(drill_text())
    document["drills"].append({"id": "kill_switch", "status": "fail", "completedAt": hours_ago(1)})
    assert gate(evaluate(drills=json.dumps(document)), "drillRecency")["reasons"] == []
    document["drills"].insert(0, {"id": "kill_switch", "status": "fail", "completedAt": hours_ago(1)})
    assert gate(evaluate(drills=json.dumps(document)), "drillRecency")["reasons"] == [
        "promotion_drill_not_passed_kill_switch"
    ]


def test_document_shape_and_key_order() -> None:
    document = evaluate(status_doc(backlog=10)).document
    assert list(document) == [
        "schemaVersion",
        "generatedAt",
        "traceId",
        "source",
        "thresholds",
        "summary",
        "gates",
    ]
    assert document["generatedAt"] == "2026-03-01T12:00:00Z"
    assert list(document["gates"]) == [key for _, key in promotion_gates.GATE_ORDER]
    assert document["source"]["fleetStatusSource"] == "file"
    assert document["thresholds"] == {
        "windowExecutions": 20,
        "minSampleSize": 20,
        "maxAmbiguityRate": 0.2,
        "maxFailureRate": 0.2,
        "maxManualBacklog": 5,
        "maxDrillAgeHours": 168,
    }
    generated = dataclass_replace_sources(fleet_status_file=None)
    assert generated["fleetStatusSource"] == "generated"
    assert generated["fleetStatusFile"] is None


def dataclass_replace_sources(**changes: Any) -> dict[str, Any]:
    return dataclasses.replace(SOURCES, **changes).to_json()


# ---------------------------------------------------------------------------------------------
# thresholds


@pytest.mark.parametrize(("text", "value"), [(".5", 0.5), ("0.20", 0.2), ("1.0", 1), ("1", 1), ("0", 0)])
def test_rate_parsing_accepts(text: str, value: float) -> None:
    assert promotion_gates.parse_rate(text, "--max-ambiguity-rate") == value


@pytest.mark.parametrize("text", ["1.5", "abc", "1e-1", "-0.1", "1.", ""])
def test_rate_parsing_rejects(text: str) -> None:
    with pytest.raises(ContractError, match="--max-failure-rate must be a number between 0 and 1"):
        promotion_gates.parse_rate(text, "--max-failure-rate")


def test_threshold_flags_validate_in_order_and_accept_leading_zeros() -> None:
    assert (
        promotion_gates.GateThresholds.from_flags(
            window_executions="08", max_manual_backlog="0"
        ).window_executions
        == 8
    )
    with pytest.raises(ContractError, match="--window-executions must be an integer >= 1"):
        promotion_gates.GateThresholds.from_flags(window_executions="0", min_sample_size="x")
    with pytest.raises(ContractError, match="--min-sample-size must be an integer >= 1"):
        promotion_gates.GateThresholds.from_flags(min_sample_size="x", max_ambiguity_rate="x")
    with pytest.raises(ContractError, match="--max-manual-backlog must be an integer >= 0"):
        promotion_gates.GateThresholds.from_flags(max_manual_backlog="-1")
    with pytest.raises(ContractError, match="--max-drill-age-hours must be an integer >= 1"):
        promotion_gates.GateThresholds.from_flags(max_drill_age_hours="0")


# ---------------------------------------------------------------------------------------------
# CI renderings


def test_ci_skip_result_and_summary_render_paths_in_backticks() -> None:
    result = promotion_gates.build_ci_skip_result("/abs/repo", ["/abs/h.jsonl", "d.json"], NOW)
    assert result == {
        "schemaVersion": "v1",
        "generatedAt": "2026-03-01T12:00:00Z",
        "source": {"repoPath": "/abs/repo"},
        "summary": {
            "decision": "skipped",
            "promote": False,
            "reasonCodes": ["promotion_ci_missing_evidence"],
            "missingEvidencePaths": ["/abs/h.jsonl", "d.json"],
        },
    }
    assert promotion_gates.build_ci_skip_summary(["/abs/h.jsonl", "d.json"]).splitlines() == [
        "## Ops Manager Promotion CI",
        "",
        "Decision: `skipped`",
        "",
        "Reason codes: `promotion_ci_missing_evidence`",
        "",
        "Missing evidence paths:",
        "- `/abs/h.jsonl`",
        "- `d.json`",
    ]


def test_ci_summary_lists_gates_codes_and_file_paths() -> None:
    document = evaluate(status_doc(backlog=10, autopause=True)).document
    text = promotion_gates.build_ci_summary(
        document, result_file="r.json", promotion_state_file="s.json", promotion_telemetry_file="t.jsonl"
    )
    assert text.splitlines() == [
        "## Ops Manager Promotion CI",
        "",
        "Decision: `hold`",
        "",
        "Failed gates: manual_backlog, safety_suppression",
        "",
        "Reason codes: promotion_autopause_active, promotion_manual_backlog_exceeded",
        "",
        "Result JSON: `r.json`",
        "",
        "Promotion state: `s.json`",
        "",
        "Promotion telemetry: `t.jsonl`",
    ]
    empty = promotion_gates.build_ci_summary(
        {}, result_file="r", promotion_state_file="s", promotion_telemetry_file="t"
    )
    assert "Decision: `unknown`" in empty
    assert "Failed gates: none" in empty
    assert "Reason codes: none" in empty
