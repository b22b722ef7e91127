"""HandoffIntent state machine: approval gate, one execution per approval, crash rule."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from superloop_ops.core.common.status_conditions import find_condition
from superloop_ops.core.handoff import handoff_intent_resource

NOW = dt.datetime(2026, 2, 22, 10, 0, 0, tzinfo=dt.UTC)
APPROVED = {"ops.superloop.dev/approved": "true", "ops.superloop.dev/approved-by": "alice"}


def _decide(
    status: dict[str, Any] | None, annotations: dict[str, str] | None
) -> handoff_intent_resource.Decision:
    return handoff_intent_resource.decide_intent(
        status=status,
        approval=handoff_intent_resource.parse_approval(annotations),
        spec_key=None,
        intent="cancel",
        name="i1",
        uid="abcdef123",
    )


@pytest.mark.parametrize(
    ("annotations", "problem"),
    [
        (None, None),
        ({}, None),
        ({"ops.superloop.dev/approved": "false", "ops.superloop.dev/approved-by": "a"}, "must be"),
        ({"ops.superloop.dev/approved": "true"}, "approved-by is required"),
        (
            {"ops.superloop.dev/approved": "true", "ops.superloop.dev/approved-by": "  "},
            "approved-by is required",
        ),
    ],
)
def test_incomplete_approvals_are_not_approvals(
    annotations: dict[str, str] | None, problem: str | None
) -> None:
    parsed = handoff_intent_resource.parse_approval(annotations)
    assert parsed.approval is None
    assert (parsed.problem is None) == (problem is None)
    if problem:
        assert problem in str(parsed.problem)
    decision = _decide(None, annotations)
    assert isinstance(decision, handoff_intent_resource.Await)


def test_approval_fields_and_fingerprint() -> None:
    parsed = handoff_intent_resource.parse_approval(
        {**APPROVED, "ops.superloop.dev/note": "ok", "ops.superloop.dev/approved-at": "T1"}
    )
    assert parsed.approval == handoff_intent_resource.Approval(by="alice", at="T1", note="ok")
    assert parsed.approval.fingerprint == "alice|T1|ok"


def test_pending_intent_waits() -> None:
    status = handoff_intent_resource.build_pending_status(previous=None, problem=None, generation=1, now=NOW)
    assert status["phase"] == handoff_intent_resource.PENDING
    approved = find_condition(status["conditions"], "Approved")
    assert approved is not None
    assert approved["reason"] == "AwaitingApproval"
    assert isinstance(_decide(status, None), handoff_intent_resource.Await)
    # `kubectl get hoi` shows MODE: a waiting intent is a manual one (it needs the annotation)
    assert status["mode"] == "manual"


def test_approved_intent_executes_once() -> None:
    pending = handoff_intent_resource.build_pending_status(previous=None, problem=None, generation=1, now=NOW)
    decision = _decide(pending, APPROVED)
    assert isinstance(decision, handoff_intent_resource.Execute)
    assert decision.attempt == 1
    assert decision.idempotency_key == "cancel-i1-abcdef12"
    executing = handoff_intent_resource.build_executing_status(
        previous=pending, decision=decision, generation=1, now=NOW
    )
    assert executing["phase"] == handoff_intent_resource.EXECUTING
    assert executing["idempotencyKey"] == decision.idempotency_key
    assert executing["approvedBy"] == "alice"
    done = handoff_intent_resource.build_outcome_status(
        previous=executing,
        outcome=handoff_intent_resource.EXECUTED,
        execution={"status": "confirmed"},
        message="ok",
        generation=1,
        now=NOW,
    )
    assert done["phase"] == handoff_intent_resource.EXECUTED
    assert done["reasonCodes"] == []
    executed = find_condition(done["conditions"], "Executed")
    assert executed is not None
    assert executed["status"] == "True"
    assert "alice" in executed["message"]
    # the same annotations (and even a new approval) never run a final outcome again
    assert isinstance(_decide(done, APPROVED), handoff_intent_resource.Finished)
    assert isinstance(
        _decide(done, {**APPROVED, "ops.superloop.dev/approved-at": "T9"}), handoff_intent_resource.Finished
    )


def test_spec_key_is_used_for_first_attempt_only() -> None:
    assert (
        handoff_intent_resource.build_idempotency_key(
            spec_key="k1", intent="cancel", name="n", uid="u", attempt=1
        )
        == "k1"
    )
    assert (
        handoff_intent_resource.build_idempotency_key(
            spec_key="k1", intent="cancel", name="n", uid="u", attempt=2
        )
        == "k1-attempt2"
    )


def test_found_executing_is_recovered_not_rerun() -> None:
    pending = handoff_intent_resource.build_pending_status(previous=None, problem=None, generation=1, now=NOW)
    decision = _decide(pending, APPROVED)
    assert isinstance(decision, handoff_intent_resource.Execute)
    executing = handoff_intent_resource.build_executing_status(
        previous=pending, decision=decision, generation=1, now=NOW
    )
    recover = _decide(executing, APPROVED)
    assert recover == handoff_intent_resource.Recover(idempotency_key=decision.idempotency_key)
    ambiguous = handoff_intent_resource.build_outcome_status(
        previous=executing,
        outcome=handoff_intent_resource.EXECUTION_AMBIGUOUS,
        execution=None,
        message="interrupted",
        generation=1,
        now=NOW,
    )
    assert ambiguous["reasonCodes"] == ["control_ambiguous"]
    cond = find_condition(ambiguous["conditions"], "Executed")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("Unknown", "ExecutionAmbiguous")
    # same approval: nothing happens
    assert isinstance(_decide(ambiguous, APPROVED), handoff_intent_resource.Finished)
    # a new approval (new approved-at stamp) retries with a new key
    retry = _decide(ambiguous, {**APPROVED, "ops.superloop.dev/approved-at": "2026-02-22T10:05:00Z"})
    assert isinstance(retry, handoff_intent_resource.Execute)
    assert retry.attempt == 2
    assert retry.idempotency_key == "cancel-i1-abcdef12-attempt2"
    second = handoff_intent_resource.build_executing_status(
        previous=ambiguous, decision=retry, generation=1, now=NOW
    )
    assert second["result"]["previousAttempts"][0]["phase"] == handoff_intent_resource.EXECUTION_AMBIGUOUS
    assert second["reasonCodes"] == []
    assert "completedAt" not in second


@pytest.mark.parametrize(
    ("control", "outcome"),
    [
        ("confirmed", handoff_intent_resource.EXECUTED),
        ("executed", handoff_intent_resource.EXECUTED),
        ("executed_unconfirmed", handoff_intent_resource.EXECUTED_UNCONFIRMED),
        ("ambiguous", handoff_intent_resource.EXECUTION_AMBIGUOUS),
        ("execution_ambiguous", handoff_intent_resource.EXECUTION_AMBIGUOUS),
        ("failed_command", handoff_intent_resource.EXECUTION_FAILED),
        ("execution_failed", handoff_intent_resource.EXECUTION_FAILED),
        ("something_new", handoff_intent_resource.EXECUTION_AMBIGUOUS),
        (None, handoff_intent_resource.EXECUTION_AMBIGUOUS),
    ],
)
def test_control_status_mapping(control: str | None, outcome: str) -> None:
    assert handoff_intent_resource.compute_outcome_from_control(control) == outcome


def test_outcome_rejects_unknown_state() -> None:
    with pytest.raises(ValueError, match="not a HandoffIntent outcome"):
        handoff_intent_resource.build_outcome_status(
            previous={}, outcome="pending", execution=None, message="", generation=1, now=NOW
        )


def test_events_follow_transitions() -> None:
    pending = handoff_intent_resource.build_pending_status(previous=None, problem=None, generation=1, now=NOW)
    assert [e.reason for e in handoff_intent_resource.compute_intent_events(None, pending)] == [
        "AwaitingApproval"
    ]
    assert handoff_intent_resource.compute_intent_events(pending, pending) == []
    bad = handoff_intent_resource.build_pending_status(
        previous=pending, problem="approved-by is required", generation=1, now=NOW
    )
    assert [(e.type, e.reason) for e in handoff_intent_resource.compute_intent_events(pending, bad)] == [
        ("Warning", "ApprovalInvalid")
    ]
    decision = _decide(pending, APPROVED)
    assert isinstance(decision, handoff_intent_resource.Execute)
    executing = handoff_intent_resource.build_executing_status(
        previous=pending, decision=decision, generation=1, now=NOW
    )
    assert [e.reason for e in handoff_intent_resource.compute_intent_events(pending, executing)] == [
        "Executing"
    ]
    failed = handoff_intent_resource.build_outcome_status(
        previous=executing,
        outcome=handoff_intent_resource.EXECUTION_FAILED,
        execution=None,
        message="boom",
        generation=1,
        now=NOW,
    )
    events = handoff_intent_resource.compute_intent_events(executing, failed)
    assert [(e.type, e.reason) for e in events] == [("Warning", "ExecutionFailed")]
    assert "alice" in events[0].message


@pytest.mark.parametrize(
    ("phase", "observed", "unobserved"),
    [
        ("executed", None, True),  # the Loop status was never written
        ("executed", NOW - dt.timedelta(seconds=5), True),  # health read before the execution
        ("executed", NOW, True),  # the same second: not provably after
        ("executed", NOW + dt.timedelta(seconds=1), False),
        ("execution_ambiguous", NOW - dt.timedelta(seconds=5), True),
        ("pending_operator_confirmation", None, False),
        ("executing", None, False),
    ],
)
def test_an_outcome_waits_for_loop_health_observed_after_it(
    phase: str, observed: dt.datetime | None, unobserved: bool
) -> None:
    status = {"phase": phase, "completedAt": "2026-02-22T10:00:00Z"}
    assert handoff_intent_resource.is_outcome_unobserved(status, observed) is unobserved
    assert handoff_intent_resource.is_outcome_unobserved(None, observed) is False
