"""The approval lapse rules (pure): the approval's moment, the limit, the status and the Event."""

from __future__ import annotations

import datetime as dt

from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.handoff import approval_lapse
from superloop_ops.core.handoff import handoff_intent_resource as intents

NOW = dt.datetime(2026, 1, 10, 12, 0, 0, tzinfo=dt.UTC)


def _managed(manager: str, moment: dt.datetime, *annotations: str) -> dict[str, object]:
    notes = {f"f:{name}": {} for name in annotations}
    return {
        "manager": manager,
        "operation": "Update",
        "time": format_ts(moment),
        "fieldsV1": {"f:metadata": {"f:annotations": notes}},
    }


def _execute(at: str | None) -> intents.Execute:
    return intents.Execute(approval=intents.Approval(by="alice", at=at), idempotency_key="k", attempt=1)


def test_the_moment_is_the_stamp_else_the_managed_fields_time_else_unknown() -> None:
    stamped = intents.Approval(by="alice", at=format_ts(NOW - dt.timedelta(minutes=3)))
    assert approval_lapse.compute_approved_at(stamped, None) == NOW - dt.timedelta(minutes=3)
    bare = intents.Approval(by="alice")
    managed = [
        _managed("kubectl-annotate", NOW - dt.timedelta(minutes=9), intents.ANNOTATION_APPROVED),
        _managed("kubectl-label", NOW - dt.timedelta(minutes=1), "other/annotation"),
        _managed("kubectl-edit", NOW - dt.timedelta(minutes=7), intents.ANNOTATION_APPROVED),
    ]
    assert approval_lapse.compute_approved_at(bare, managed) == NOW - dt.timedelta(minutes=7)
    assert approval_lapse.compute_approved_at(bare, [{"manager": "x"}]) is None
    unparseable = intents.Approval(by="alice", at="yesterday")
    assert approval_lapse.compute_approved_at(unparseable, managed) == NOW - dt.timedelta(minutes=7)


def test_only_an_execute_older_than_the_limit_lapses() -> None:
    old = NOW - dt.timedelta(seconds=301)
    assert approval_lapse.compute_lapse(_execute(None), approved_at=old, max_age_seconds=300, now=NOW)
    edge = NOW - dt.timedelta(seconds=300)
    assert (
        approval_lapse.compute_lapse(_execute(None), approved_at=edge, max_age_seconds=300, now=NOW) is None
    )
    assert (
        approval_lapse.compute_lapse(_execute(None), approved_at=None, max_age_seconds=300, now=NOW) is None
    )
    awaiting = intents.Await()
    assert approval_lapse.compute_lapse(awaiting, approved_at=old, max_age_seconds=300, now=NOW) is None


def test_the_lapsed_status_keeps_the_phase_and_says_why_once() -> None:
    at = NOW - dt.timedelta(hours=1)
    lapse = approval_lapse.Lapse(intents.Approval(by="alice", at=format_ts(at)), at, 120)
    pending = approval_lapse.build_lapsed_status(previous=None, lapse=lapse, generation=1, now=NOW)
    assert pending["phase"] == intents.PENDING
    assert pending["reasonCodes"] == ["approval_lapsed"]
    assert pending["result"]["lapsedApproval"] == {
        "by": "alice", "at": format_ts(at), "fingerprint": f"alice|{format_ts(at)}|", "maxAgeSeconds": 120,
    }  # fmt: skip
    events = approval_lapse.compute_lapse_events(None, pending)
    assert [(e.type, e.reason) for e in events] == [("Warning", "ApprovalLapsed")]
    assert approval_lapse.compute_lapse_events(pending, pending) == []
    failed = {
        "phase": intents.EXECUTION_FAILED,
        "reasonCodes": ["control_failed_command"],
        "result": {"attempt": 1},
    }
    kept = approval_lapse.build_lapsed_status(previous=failed, lapse=lapse, generation=2, now=NOW)
    assert kept["phase"] == intents.EXECUTION_FAILED
    assert kept["reasonCodes"] == ["control_failed_command", "approval_lapsed"]
    assert kept["result"]["attempt"] == 1
    # a fresh approval is a new fingerprint, so the ordinary rules execute it (attempt 2 here)
    fresh = intents.parse_approval(
        {intents.ANNOTATION_APPROVED: "true", intents.ANNOTATION_APPROVED_BY: "bob"}
    )
    decision = intents.decide_intent(
        status=kept, approval=fresh, spec_key=None, intent="cancel", name="n", uid="u"
    )
    assert isinstance(decision, intents.Execute)
    assert decision.attempt == 2
