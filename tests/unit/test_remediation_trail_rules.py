"""The remediation trail (pure): the record a Loop carries, the Event tag, the timeline."""

from __future__ import annotations

import datetime as dt
from typing import Any

from superloop_ops.core.handoff import remediation_trail as trail
from superloop_ops.core.handoff.handoff_intent_resource import IntentEvent
from superloop_ops.core.loop import remediation

NOW = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.UTC)
T = "3f0c"


def _at(seconds: int) -> str:
    return (NOW + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _carry(
    previous: Any, outcome: str, health: str, trace: str, seconds: int
) -> remediation.RemediationUpdate:
    return remediation.compute_remediation(
        previous, loop_id="l1", outcome=outcome, health_status=health,
        reason_codes=["x"] if health != "healthy" else [], trace_id=trace,
        started_at=NOW + dt.timedelta(seconds=seconds), finished_at=NOW + dt.timedelta(seconds=seconds + 2),
    )  # fmt: skip


def test_a_remediation_opens_once_is_carried_and_resolves() -> None:
    assert _carry(None, "success", "healthy", "p0", 0).record is None
    opened = _carry(None, "success", "critical", T, 1)
    assert opened.record == {
        "traceId": T, "state": "open", "openedAt": _at(1), "healthStatus": "critical", "reasonCodes": ["x"],
    }  # fmt: skip
    assert opened.row is not None
    assert (opened.row["event"], opened.row["traceId"]) == ("opened", T)
    assert opened.event is not None
    assert opened.event.reason == "RemediationOpened"
    assert remediation.find_open_trace({"remediation": opened.record}) == T
    carried = _carry(opened.record, "failed", "degraded", "ignored", 2)
    assert carried.record is not None
    assert (carried.record["traceId"], carried.record["healthStatus"], carried.row) == (T, "degraded", None)
    resolved = _carry(carried.record, "success", "healthy", T, 3)
    assert resolved.record is not None
    assert (resolved.record["state"], resolved.record["resolvedAt"]) == ("resolved", _at(5))  # at its end
    assert resolved.row is not None
    assert resolved.row["event"] == "resolved"
    assert remediation.find_open_trace({"remediation": resolved.record}) is None
    again = _carry(resolved.record, "failed", "unknown", "t2", 4)  # a failed pass is a signal too
    assert again.record is not None
    assert (again.record["traceId"], again.record["state"]) == ("t2", "open")


def test_a_mark_tells_the_opening_the_carrying_and_the_resolution_apart() -> None:
    opened = _carry(None, "success", "critical", T, 1).record
    carried = _carry(opened, "failed", "degraded", "ignored", 2).record
    resolved = _carry(carried, "success", "healthy", T, 3).record
    assert remediation.mark_of({}) is None
    assert remediation.mark_of(None) is None
    assert remediation.mark_of({"remediation": opened}) == (T, "open")
    assert remediation.mark_of({"remediation": carried}) == (T, "open")  # same record, health updated
    assert remediation.mark_of({"remediation": resolved}) == (T, "resolved")


def test_the_event_tag_round_trips_within_the_message_limit() -> None:
    assert trail.tag_message("m", None) == "m"
    tagged = trail.tag_message("x" * 2000, T)
    assert len(tagged) == 1024
    assert trail.find_message_trace(tagged) == T
    assert trail.find_message_trace("no tag") is None
    events = trail.tag_events([IntentEvent("Normal", "Executed", "done")], T)
    assert events[0].message == f"done [trace {T}]"


def _intent(name: str, trace: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": _at(20)},
        "spec": {
            "traceId": trace,
            "intent": "cancel",
            "loopRef": {"name": "fl-l1"},
            "candidate": {"category": "c"},
        },
        "status": status,
    }


def _journal() -> dict[str, list[Any]]:
    return {
        "remediations": [
            {
                "timestamp": _at(0),
                "loopId": "l1",
                "traceId": T,
                "event": "opened",
                "healthStatus": "critical",
            },
            {
                "timestamp": _at(0),
                "loopId": "l9",
                "traceId": "other",
                "event": "opened",
                "healthStatus": "critical",
            },
            {
                "timestamp": _at(90),
                "loopId": "l1",
                "traceId": T,
                "event": "resolved",
                "healthStatus": "healthy",
            },
        ],
        "escalations": [
            {"timestamp": _at(0), "traceId": T, "category": "health_critical", "reasonCodes": ["x"]}
        ],
        "alert_dispatch": [
            {"timestamp": _at(1), "traceId": "d", "escalationTraceId": T, "status": "delivered"}
        ],
        "fleet_trail": [{"timestamp": _at(10), "traceId": T, "step": "fleet_candidate", "summary": "cand"}],
        "handoff_intents": [
            {
                "timestamp": _at(40),
                "traceId": T,
                "phase": "approval_lapsed",
                "approvedBy": "bob",
                "handoffIntent": "hi",
                "approvedAt": _at(5),
                "maxAgeSeconds": 30,
            },
            {
                "timestamp": _at(60),
                "traceId": T,
                "phase": "executing",
                "intent": "cancel",
                "approvedBy": "ann",
            },
            {"timestamp": _at(61), "traceId": T, "phase": "executed", "intent": "cancel"},
        ],
        "control": [{"timestamp": _at(61), "traceId": T, "intent": "cancel", "status": "confirmed"}],
        "reconcile": [
            {"timestamp": _at(t), "traceId": T, "status": "success", "healthStatus": h}
            for t, h in ((0, "critical"), (30, "critical"), (70, "healthy"), (90, "healthy"))
        ],
    }


def test_the_timeline_is_every_step_of_one_trace_in_order() -> None:
    approval = {
        "approval": {"by": "ann", "at": _at(50)},
        "lapsedApproval": {"by": "bob", "at": _at(5), "maxAgeSeconds": 30},
    }
    events = [
        {"object": "HandoffIntent/hi", "type": "Normal", "reason": "Executed", "message": f"ok [trace {T}]",
         "timestamp": _at(61)},
        {"object": "HandoffIntent/hj", "type": "Normal", "reason": "Executed", "message": "ok [trace zz]",
         "timestamp": _at(61)},
    ]  # fmt: skip
    inputs = trail.TrailInputs(
        journal=_journal(), intents=[_intent("hi", T, result=approval), _intent("hj", "zz")], events=events
    )
    result = trail.assemble_trail(T, inputs)
    assert [(s["at"], s["step"]) for s in result["steps"]] == [
        (_at(0), "health_signal"),
        (_at(0), "alert"),
        (_at(0), "health_pass"),
        (_at(1), "alert_delivery"),
        (_at(10), "fleet_candidate"),
        (_at(20), "handoff_intent"),
        (_at(40), "approval_lapsed"),  # journal row; the object's copy of it is not repeated
        (_at(50), "approval"),
        (_at(60), "execution"),
        (_at(61), "control"),
        (_at(61), "outcome"),
        (_at(61), "event"),
        (_at(70), "effect"),  # the first health pass after the outcome; the repeat at 30 is dropped
        (_at(90), "resolved"),
    ]
    assert (
        result["steps"][-2]["summary"] == "after the action: health pass (success): healthy, no reason codes"
    )
    assert result["stepKinds"][0] == "health_signal"


def test_autonomous_decisions_and_lapsed_approvals_are_steps() -> None:
    autonomous = _intent("ha", T, mode="autonomous", startedAt=_at(30), result={"autonomous": True})
    lapsed = _intent("hl", T, result={"lapsedApproval": {"by": "bob", "at": _at(5), "maxAgeSeconds": 60}})
    steps = trail.assemble_trail(T, trail.TrailInputs(intents=[autonomous, lapsed]))["steps"]
    assert [(s["step"], s.get("handoffIntent")) for s in steps] == [
        ("approval_lapsed", "hl"), ("handoff_intent", "ha"), ("handoff_intent", "hl"),
        ("autonomous_decision", "ha"),
    ]  # fmt: skip


def test_a_lapse_and_the_fresh_approval_in_the_same_second_read_lapse_first() -> None:
    """An approval lapses only once older than the policy's age: the one of the same second follows it."""
    result = {"approval": {"by": "ann", "at": _at(40)}, "lapsedApproval": {"by": "ann", "at": _at(40)}}
    steps = trail.assemble_trail(T, trail.TrailInputs(intents=[_intent("hi", T, result=result)]))["steps"]
    assert [s["step"] for s in steps if s["step"].startswith("approval")] == ["approval_lapsed", "approval"]


def test_a_target_resolves_through_an_intent_a_loop_or_stays_a_trace_id() -> None:
    loops = {"fl-l1": {"spec": {"loopId": "l1"}, "status": {"remediation": {"traceId": "from-status"}}}}
    rows = _journal()["remediations"]
    kwargs: dict[str, Any] = {
        "intents_by_name": {"hi": _intent("hi", T)},
        "loops": loops,
        "remediations": rows,
    }
    assert trail.resolve_trace_id("hi", **kwargs) == T
    assert trail.resolve_trace_id("fl-l1", **kwargs) == "from-status"
    assert trail.resolve_trace_id("l9", **kwargs) == "other"
    assert (
        trail.resolve_trace_id("gone", **kwargs, handoff_rows=[{"handoffIntent": "gone", "traceId": "g"}])
        == "g"
    )
    assert trail.resolve_trace_id("abc", **kwargs) == "abc"
    assert "no steps found" in trail.render_trail_text({"traceId": "abc", "steps": []})


def test_without_the_journal_the_loop_status_gives_the_signal_and_the_resolution() -> None:
    record = {
        "traceId": T,
        "state": "resolved",
        "openedAt": _at(0),
        "resolvedAt": _at(90),
        "healthStatus": "healthy",
    }
    loop = {"spec": {"loopId": "l1"}, "status": {"remediation": record}}
    other = {"spec": {"loopId": "l2"}, "status": {"remediation": {**record, "traceId": "x"}}}
    alone = trail.assemble_trail(T, trail.TrailInputs(loops=[loop, other]))
    assert [(s["at"], s["step"], s["source"]) for s in alone["steps"]] == [
        (_at(0), "health_signal", "api"),
        (_at(90), "resolved", "api"),
    ]
    both = trail.assemble_trail(T, trail.TrailInputs(journal=_journal(), loops=[loop]))
    assert [s["source"] for s in both["steps"] if s["step"] in ("health_signal", "resolved")] == [
        "journal"
    ] * 2
