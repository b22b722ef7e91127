"""Promotion apply core: validation order, decision gating, review-by rules, posture moves,
idempotent replay and the apply record (promotion §3). Frozen ``NOW``; review deadlines are
relative to it."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.fleet import fleet_registry
from superloop_ops.core.promotion import apply_rules
from superloop_ops.errors import ContractError

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
REVIEW_BY = format_ts(NOW + dt.timedelta(days=30))


def request(intent: str = "expand", **overrides: Any) -> apply_rules.ApplyRequest:
    fields: dict[str, Any] = {
        "intent": intent,
        "expand_step": "25",
        "by": "ops-user",
        "approval_ref": "CAB-111",
        "rationale": "phase11 expand",
        "review_by": REVIEW_BY,
        "idempotency_key": None,
    }
    fields.update(overrides)
    return apply_rules.build_apply_request(**fields)


def outcome(
    req: apply_rules.ApplyRequest,
    decision: Any = "promote",
    posture: apply_rules.RolloutPosture | None = None,
    prior: tuple[Any, ...] = (),
) -> apply_rules.ApplyOutcome:
    return apply_rules.compute_promotion_apply(
        request=req,
        decision=decision,
        posture=posture or apply_rules.RolloutPosture(25, True),
        fleet_id="fleet-phase11",
        trace_id="trace-01",
        now=NOW,
        prior_records=prior,
        files={"registryFile": "r.json"},
    )


def registry(canary: Any = 25, manual: Any = True, mode: str = "guarded_auto") -> dict[str, Any]:
    return {
        "schemaVersion": "v1",
        "fleetId": "fleet-phase11",
        "loops": [{"loopId": "loop-a", "transport": "local"}, {"loopId": "loop-b", "transport": "local"}],
        "policy": {
            "mode": mode,
            "autonomous": {
                "governance": {
                    "actor": "old",
                    "approvalRef": "OLD-1",
                    "rationale": "old",
                    "changedAt": format_ts(NOW - dt.timedelta(days=10)),
                    "reviewBy": format_ts(NOW + dt.timedelta(days=10)),
                },
                "rollout": {"canaryPercent": canary, "pause": {"manual": manual}, "scope": {"loopIds": []}},
                "safety": {"killSwitch": False},
            },
        },
        "customField": {"kept": True},
    }


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"intent": "shrink", "expand_step": "0", "by": ""},
            "--intent must be one of expand, resume, rollback",
        ),
        ({"intent": None}, "--intent must be one of expand, resume, rollback"),
        ({"expand_step": "0", "by": ""}, "--expand-step must be an integer between 1 and 100"),
        ({"expand_step": "101"}, "--expand-step must be an integer between 1 and 100"),
        ({"expand_step": "2.5"}, "--expand-step must be an integer between 1 and 100"),
        ({"by": "", "approval_ref": ""}, "--by is required"),
        ({"by": None}, "--by is required"),
        ({"approval_ref": "", "rationale": ""}, "--approval-ref is required"),
        ({"rationale": ""}, "--rationale is required"),
        ({"review_by": ""}, "--review-by is required"),
    ],
)
def test_request_validation_order(overrides: dict[str, Any], message: str) -> None:
    fields = {"intent": "expand", **overrides}
    with pytest.raises(ContractError, match=f"^{message}$"):
        request(**fields)


def test_expand_step_checked_for_every_intent_and_leading_zero_accepted() -> None:
    with pytest.raises(ContractError, match="--expand-step"):
        request("rollback", expand_step="abc")
    assert request("expand", expand_step="08").expand_step == 8
    assert request("resume", by="   ").by == "   "  # whitespace-only is non-empty


def test_resume_without_by_is_rejected() -> None:
    with pytest.raises(ContractError, match="--by is required"):
        request("resume", by=None)


# ---------------------------------------------------------------------------------------------
# gating and review-by


@pytest.mark.parametrize("decision", ["hold", "skipped", "unknown"])
def test_expand_and_resume_require_promote(decision: str) -> None:
    for intent in ("expand", "resume"):
        with pytest.raises(ContractError) as caught:
            outcome(request(intent), decision=decision)
        assert str(caught.value) == f"intent {intent} requires promotion decision promote (found: {decision})"


@pytest.mark.parametrize("decision", ["hold", "skipped", "unknown", "promote"])
def test_rollback_is_safety_allowed_on_any_decision(decision: str) -> None:
    result = outcome(request("rollback"), decision=decision, posture=apply_rules.RolloutPosture(70, False))
    assert result.after == apply_rules.RolloutPosture(70, True)
    assert result.record["decision"] == decision


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-31T12:00:00.000Z",
        "2026-03-31T12:00:00+00:00",
        "2026-03-31",
        "2026-03-31 12:00:00Z",
        "2026-02-30T00:00:00Z",
    ],
)
def test_review_by_must_be_canonical(value: str) -> None:
    with pytest.raises(ContractError, match=r"^--review-by must be an ISO-8601 timestamp$"):
        outcome(request("rollback", review_by=value))


@pytest.mark.parametrize("delta", [0, -1, -86400])
def test_review_by_must_be_strictly_future(delta: int) -> None:
    value = format_ts(NOW + dt.timedelta(seconds=delta))
    with pytest.raises(ContractError, match=r"^--review-by must be in the future$"):
        outcome(request("rollback", review_by=value))


def test_gating_precedes_review_by_checks() -> None:
    with pytest.raises(ContractError, match="requires promotion decision promote"):
        outcome(request("expand", review_by="bad"), decision="hold")


def test_select_decision() -> None:
    assert apply_rules.select_decision({"summary": {"decision": "hold"}}) == "hold"
    documents: tuple[Any, ...] = (
        None,
        {},
        {"summary": {}},
        {"summary": {"decision": ""}},
        {"summary": {"decision": False}},
    )
    for document in documents:
        with pytest.raises(ContractError, match=r"^promotion state missing summary.decision$"):
            apply_rules.select_decision(document)


# ---------------------------------------------------------------------------------------------
# posture


def test_expand_adds_step_and_clears_pause() -> None:
    result = outcome(request("expand"))
    assert result.record["rollout"] == {
        "before": {"canaryPercent": 25, "manualPause": True},
        "after": {"canaryPercent": 50, "manualPause": False},
        "changed": {"canaryPercent": True, "manualPause": True},
    }


def test_expand_clamps_at_100() -> None:
    result = outcome(request("expand"), posture=apply_rules.RolloutPosture(90, False))
    assert result.record["rollout"]["after"] == {"canaryPercent": 100, "manualPause": False}
    assert result.record["rollout"]["changed"] == {"canaryPercent": True, "manualPause": False}
    full = outcome(request("expand"), posture=apply_rules.RolloutPosture(100, False))
    assert full.record["rollout"]["changed"] == {"canaryPercent": False, "manualPause": False}


def test_resume_keeps_canary_and_clears_pause() -> None:
    result = outcome(request("resume"), posture=apply_rules.RolloutPosture(40, True))
    assert result.after == apply_rules.RolloutPosture(40, False)
    assert result.record["rollout"]["changed"] == {"canaryPercent": False, "manualPause": True}


def test_read_registry_posture_defaults() -> None:
    assert apply_rules.read_registry_posture({}) == apply_rules.RolloutPosture(100, False)
    assert apply_rules.read_registry_posture(registry(canary=0, manual=True)) == apply_rules.RolloutPosture(
        0, True
    )


# ---------------------------------------------------------------------------------------------
# record


def test_record_shape() -> None:
    record = outcome(request("expand", idempotency_key="replay-key-1")).record
    assert list(record) == [
        "schemaVersion",
        "timestamp",
        "category",
        "fleetId",
        "traceId",
        "idempotencyKey",
        "status",
        "intent",
        "decision",
        "governance",
        "rollout",
        "files",
        "reasonCodes",
    ]
    assert record["timestamp"] == record["governance"]["changedAt"] == "2026-03-01T12:00:00Z"
    assert record["governance"] == {
        "actor": "ops-user",
        "approvalRef": "CAB-111",
        "rationale": "phase11 expand",
        "changedAt": "2026-03-01T12:00:00Z",
        "reviewBy": REVIEW_BY,
    }
    assert (record["category"], record["status"], record["reasonCodes"]) == ("promotion_apply", "applied", [])
    assert record["idempotencyKey"] == "replay-key-1"
    assert outcome(request("expand")).record["idempotencyKey"] is None


# ---------------------------------------------------------------------------------------------
# replay


def test_replay_returns_last_prior_record_even_for_another_intent() -> None:
    first = outcome(request("expand", idempotency_key="k")).record
    second = {**first, "traceId": "trace-later"}
    unrelated = {**first, "idempotencyKey": "other", "traceId": "trace-x"}
    result = outcome(request("rollback", idempotency_key="k"), prior=(first, "junk", second, unrelated))
    assert result.replayed
    assert result.after is None
    assert result.record == {**second, "replayed": True}
    assert list(result.record)[-1] == "replayed"
    assert "replayed" not in first


def test_replay_is_still_gated_by_decision_and_review_by() -> None:
    prior = (outcome(request("expand", idempotency_key="k")).record,)
    with pytest.raises(ContractError, match="requires promotion decision promote"):
        outcome(request("expand", idempotency_key="k"), decision="hold", prior=prior)
    past = format_ts(NOW - dt.timedelta(days=1))
    with pytest.raises(ContractError, match="--review-by must be in the future"):
        outcome(request("expand", idempotency_key="k", review_by=past), prior=prior)


def test_replay_needs_a_key_and_no_posture() -> None:
    prior = (outcome(request("expand", idempotency_key="k")).record,)
    assert apply_rules.find_replay_record(prior, None) is None
    assert apply_rules.find_replay_record(prior, "") is None
    replay = apply_rules.compute_promotion_apply(
        request=request("expand", idempotency_key="k"),
        decision="promote",
        posture=None,
        fleet_id="f",
        trace_id="t",
        now=NOW,
        prior_records=prior,
    )
    assert replay.replayed
    with pytest.raises(ContractError, match="failed to read/validate fleet registry"):
        apply_rules.compute_promotion_apply(
            request=request("expand"), decision="promote", posture=None, fleet_id="f", trace_id="t", now=NOW
        )


# ---------------------------------------------------------------------------------------------
# registry patch


def test_patched_registry_changes_only_promotion_fields_and_stays_valid() -> None:
    raw = registry()
    original = copy.deepcopy(raw)
    result = outcome(request("expand"), posture=apply_rules.read_registry_posture(raw))
    assert result.after is not None
    assert result.governance is not None
    patched = apply_rules.build_patched_registry(raw, result.after, result.governance)
    assert raw == original
    expected = copy.deepcopy(original)
    expected["policy"]["autonomous"]["rollout"]["canaryPercent"] = 50
    expected["policy"]["autonomous"]["rollout"]["pause"]["manual"] = False
    expected["policy"]["autonomous"]["governance"] = result.governance.to_json()
    assert patched == expected
    assert "sourceFile" not in patched
    assert "loopCount" not in patched
    assert fleet_registry.compute_registry_errors(patched, NOW) == []


def test_patched_registry_creates_missing_sections() -> None:
    raw: dict[str, Any] = {"schemaVersion": "v1", "loops": [], "policy": {"mode": "guarded_auto"}}
    governance = apply_rules.ApplyGovernance("a", "b", "c", format_ts(NOW), REVIEW_BY)
    patched = apply_rules.build_patched_registry(raw, apply_rules.RolloutPosture(100, True), governance)
    assert patched["policy"]["autonomous"] == {
        "rollout": {"canaryPercent": 100, "pause": {"manual": True}},
        "governance": governance.to_json(),
    }


def test_require_guarded_auto() -> None:
    apply_rules.require_guarded_auto(registry())
    for raw in (registry(mode="advisory"), {}, {"policy": {"mode": None}}):
        with pytest.raises(ContractError, match=r"^promotion apply requires policy.mode guarded_auto$"):
            apply_rules.require_guarded_auto(raw)


def test_compute_review_by() -> None:
    assert apply_rules.compute_review_by("2030-01-01T00:00:00Z", None, NOW) == "2030-01-01T00:00:00Z"
    assert apply_rules.compute_review_by(None, 14, NOW) == "2026-03-15T12:00:00Z"
    with pytest.raises(ContractError, match="--review-by is required"):
        apply_rules.compute_review_by(None, None, NOW)
