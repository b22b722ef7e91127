"""Lifecycle truth table (§4.2), divergence flags (§4.4), transition and state.json shape (§4.3-§4.6)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superloop_ops.core.loop import envelopes, projection
from superloop_ops.errors import ContractError

NOW = dt.datetime(2026, 3, 1, 8, 0, 31, tzinfo=dt.UTC)
DATA = Path(__file__).resolve().parents[1] / "data" / "ingest" / "envelopes"
LOOP = "demo-loop"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def _events(name: str = "events-running.ndjson") -> list[dict[str, Any]]:
    return envelopes.parse_event_envelopes((DATA / name).read_bytes(), LOOP, name)


def _project(snapshot: Any, events: list[dict[str, Any]] | None = None, previous: Any = None) -> Any:
    return projection.compute_projection(
        snapshot,
        events or [],
        previous,
        NOW,
        repo_path="/srv/demo",
        loop_id=LOOP,
        snapshot_file="/tmp/snap.json",
        events_file="/tmp/events.ndjson" if events else None,
    )


# ----------------------------------------------------------------------------- truth table

ACTIVE_HERE = {"active": True, "current_loop_id": LOOP}
INACTIVE = {"active": False, "current_loop_id": LOOP}
ENTRY = {"run_id": "r", "completion_ok": False}


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            dict(approval={"status": "pending"}, latest_entry={"completion_ok": True}, state=ACTIVE_HERE),
            "awaiting_approval",
        ),
        (dict(latest_entry={"completion_ok": True}, state=ACTIVE_HERE), "complete"),
        (dict(latest_entry=ENTRY, state=ACTIVE_HERE, last_event={"event": "loop_stop"}), "running"),
        (dict(state=INACTIVE, latest_entry=ENTRY, last_event={"event": "rate_limit_stop"}), "stopped"),
        (dict(last_event={"type": "no_progress_stop"}), "stopped"),
        (
            dict(state=INACTIVE, latest_entry=ENTRY, last_event={"event": "role_end", "status": "timeout"}),
            "failed",
        ),
        (dict(state=INACTIVE, latest_entry=ENTRY, last_event={"event": "role_end", "status": "ok"}), "idle"),
        (dict(state={"current_loop_id": LOOP}, latest_entry=ENTRY), "idle"),
        (dict(state=INACTIVE), "unknown"),
        (dict(), "unknown"),
    ],
)
def test_truth_table_rows(facts: dict[str, Any], expected: str) -> None:
    assert projection.compute_run_status(projection.LifecycleFacts(loop_id=LOOP, **facts)) == expected


def test_other_loop_active_in_the_same_repo_is_unknown() -> None:
    facts = projection.LifecycleFacts(
        loop_id=LOOP, state={"active": True, "current_loop_id": "other-loop"}, latest_entry=ENTRY
    )
    assert projection.compute_run_status(facts) == "unknown"


def test_summary_with_empty_entries_cannot_be_idle() -> None:
    facts = projection.LifecycleFacts(loop_id=LOOP, state=INACTIVE, latest_entry=None)
    assert projection.compute_run_status(facts) == "unknown"


def test_no_state_after_cancel_with_summary_is_unknown() -> None:
    facts = projection.LifecycleFacts(loop_id=LOOP, state=None, latest_entry=ENTRY)
    assert projection.compute_run_status(facts) == "unknown"


def test_non_boolean_active_is_neither_running_nor_idle() -> None:
    facts = projection.LifecycleFacts(
        loop_id=LOOP, state={"active": "yes", "current_loop_id": LOOP}, latest_entry=ENTRY
    )
    assert projection.compute_run_status(facts) == "unknown"


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from(
        [
            "",
            "pending",
            "approved",
            LOOP,
            "other",
            "loop_stop",
            "rate_limit_stop",
            "no_progress_stop",
            "role_end",
            "error",
            "timeout",
            "blocked",
            "rate_limited",
            "ok",
        ]
    ),
)
_obj = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["status", "completion_ok", "active", "current_loop_id", "event", "type"]),
        _scalar,
        max_size=4,
    ),
)


def _oracle(f: projection.LifecycleFacts) -> str:
    """An independent reading of §4.2, written from the table, not from the implementation."""

    def g(o: Any, k: str) -> Any:
        return o.get(k) if isinstance(o, dict) else None

    name = g(f.last_event, "event")
    if name is None or name is False:
        name = g(f.last_event, "type")
    status = g(f.last_event, "status")
    matches = [
        ("awaiting_approval", f.approval is not None and g(f.approval, "status") == "pending"),
        ("complete", f.latest_entry is not None and g(f.latest_entry, "completion_ok") is True),
        (
            "running",
            f.state is not None and g(f.state, "active") is True and g(f.state, "current_loop_id") == LOOP,
        ),
        ("stopped", isinstance(name, str) and name in {"loop_stop", "rate_limit_stop", "no_progress_stop"}),
        ("failed", isinstance(status, str) and status in {"error", "timeout", "blocked", "rate_limited"}),
        (
            "idle",
            f.state is not None
            and any(g(f.state, "active") is v for v in (None, False))
            and f.latest_entry is not None,
        ),
    ]
    return next((result for result, hit in matches if hit), "unknown")


@settings(max_examples=400, deadline=None)
@given(approval=_obj, entry=_obj, state=_obj, last=_obj)
def test_truth_table_is_total_deterministic_and_first_match(
    approval: Any, entry: Any, state: Any, last: Any
) -> None:
    facts = projection.LifecycleFacts(
        loop_id=LOOP, approval=approval, latest_entry=entry, state=state, last_event=last
    )
    first = projection.compute_run_status(facts)
    assert first in projection.RUN_STATUSES
    assert projection.compute_run_status(facts) == first
    assert first == _oracle(facts)
    # first match: no earlier rule matches, and the chosen one does
    names = [name for name, _ in projection.LIFECYCLE_RULES]
    if first != "unknown":
        index = names.index(first)
        assert projection.LIFECYCLE_RULES[index][1](facts)
        assert not any(rule(facts) for _, rule in projection.LIFECYCLE_RULES[:index])
    else:
        assert not any(rule(facts) for _, rule in projection.LIFECYCLE_RULES)


# ----------------------------------------------------------------------------- projection


def test_running_lifecycle_triggered_by_the_last_polled_event() -> None:
    state = _project(_load("snapshot-running.json"), _events())
    assert state["transition"]["currentState"] == "running"
    assert state["transition"]["triggeringSignal"] == "event:role_end"
    assert state["transition"]["confidence"] == "high"
    assert state["transition"]["previousState"] == "none"
    assert state["divergence"]["any"] is False
    assert state["evidence"]["lastEventEnvelope"] == _events()[-1]


def test_approval_pending_with_completion_is_a_divergence() -> None:
    state = _project(_load("snapshot-approval-conflict.json"))
    assert state["divergence"]["flags"]["approvalCompletionConflict"] is True
    assert state["divergence"]["any"] is True
    assert state["transition"]["confidence"] == "low"
    assert state["transition"]["triggeringSignal"] == "snapshot_status:awaiting_approval"
    assert state["projection"]["hasPendingApproval"] is True
    assert state["projection"]["completionOk"] is True


def test_prior_state_ahead_of_the_snapshot_is_a_cursor_regression() -> None:
    state = _project(_load("snapshot-running.json"), previous={"cursor": {"eventLineOffset": 99}})
    assert state["divergence"]["flags"]["cursorRegression"] is True
    assert state["divergence"]["any"] is True


@pytest.mark.parametrize(
    ("previous_offset", "flag"),
    [(2, False), (1, False), ("3", True), ("x", False), (-5, False), (None, False)],
)
def test_cursor_regression_compares_non_negative_integers_only(previous_offset: Any, flag: bool) -> None:
    state = _project(
        _load("snapshot-running.json"), previous={"cursor": {"eventLineOffset": previous_offset}}
    )
    assert state["divergence"]["flags"]["cursorRegression"] is flag


def test_invalid_event_envelope_fails_the_projection() -> None:
    with pytest.raises(ContractError, match="event envelope is invalid"):
        _project(_load("snapshot-running.json"), [{"not": "a-valid-envelope"}])


def test_snapshot_for_another_loop_fails_the_projection() -> None:
    snapshot = _load("snapshot-running.json")
    snapshot["source"]["loopId"] = "other-loop"
    with pytest.raises(ContractError, match="snapshot envelope is invalid or loop id mismatch"):
        _project(snapshot)


def test_active_phase_event_while_runtime_inactive_is_an_active_mismatch() -> None:
    snapshot = _load("snapshot-running.json")
    snapshot["runtime"]["superloopState"]["active"] = False
    state = _project(snapshot, _events())
    assert state["divergence"]["flags"]["activeMismatch"] is True
    assert state["transition"]["confidence"] == "low"
    assert state["projection"]["active"] is None  # jq's ``false // null``, kept


def test_only_the_last_polled_event_counts_for_active_mismatch() -> None:
    snapshot = _load("snapshot-running.json")
    snapshot["runtime"]["superloopState"] = None
    events = _events()
    last = copy.deepcopy(events[-1])
    last["event"]["name"] = "loop_stop"
    state = _project(snapshot, [events[0], last])
    assert state["divergence"]["flags"]["activeMismatch"] is False
    assert state["transition"]["triggeringSignal"] == "event:loop_stop"


def test_previous_state_and_cursor_copied_from_the_snapshot() -> None:
    previous = {"transition": {"currentState": "idle"}, "cursor": {"eventLineOffset": 1}}
    state = _project(_load("snapshot-running.json"), previous=previous)
    assert state["transition"]["previousState"] == "idle"
    assert state["cursor"] == {"eventLineOffset": 2, "eventLineCount": 2}
    assert state["transition"]["confidence"] == "medium"
    assert _project(_load("snapshot-running.json"), previous={})["transition"]["previousState"] == "none"


def test_state_document_shape() -> None:
    state = _project(_load("snapshot-running.json"), _events())
    assert list(state) == [
        "schemaVersion",
        "generatedAt",
        "source",
        "run",
        "transition",
        "projection",
        "cursor",
        "divergence",
        "evidence",
        "signals",  # ours (issue 11), after the contract's keys
    ]
    assert state["signals"] == {
        "stateFilePresent": True,
        "activeRunPresent": False,
        "approvalRequestedAt": None,
    }
    assert state["generatedAt"] == "2026-03-01T08:00:31Z"
    assert state["source"] == {"repoPath": "/srv/demo", "loopId": LOOP}
    assert state["run"] == {"runId": "run-7f3", "iteration": 1}
    assert state["projection"] == {
        "status": "running",
        "hasPendingApproval": False,
        "completionOk": False,
        "gates": {
            "tests": "ok",
            "validation": "ok",
            "prerequisites": "ok",
            "checklist": "ok",
            "evidence": "skipped",
            "approval": "none",
        },
        "stuck": {"streak": 0, "threshold": 3},
        "active": True,
        "lastEventName": "iteration_start",
        "lastEventAt": "2026-03-01T08:00:06Z",
    }
    assert state["evidence"]["snapshotEnvelope"] == {
        "runStatus": "running",
        "lastEventName": "iteration_start",
        "hasPendingApproval": False,
    }
    assert state["evidence"]["snapshotFile"] == "/tmp/snap.json"
    assert state["evidence"]["eventsFile"] == "/tmp/events.ndjson"


def test_non_boolean_completion_ok_cannot_be_projected() -> None:
    snapshot = _load("snapshot-running.json")
    snapshot["run"]["summary"]["completion_ok"] = "maybe"
    with pytest.raises(ContractError, match="completion_ok is not a boolean"):
        _project(snapshot)


def test_missing_run_status_defaults_to_unknown() -> None:
    snapshot = _load("snapshot-running.json")
    del snapshot["run"]["status"]
    state = _project(snapshot)
    assert state["transition"]["currentState"] == "unknown"
    assert state["evidence"]["snapshotEnvelope"]["runStatus"] == "unknown"


@settings(max_examples=200, deadline=None)
@given(
    active=st.sampled_from([True, False, None]),
    pending=st.booleans(),
    completion=st.sampled_from([True, False, None]),
    prev=st.integers(0, 5),
    cur=st.integers(0, 5),
    last=st.one_of(st.none(), st.sampled_from(["role_end", "loop_stop", "iteration_start", "tests_end"])),
)
def test_confidence_follows_divergence_and_batch(
    active: Any, pending: bool, completion: Any, prev: int, cur: int, last: str | None
) -> None:
    snapshot = _load("snapshot-running.json")
    snapshot["runtime"]["superloopState"]["active"] = active
    snapshot["runtime"]["approval"] = {"status": "pending"} if pending else None
    snapshot["run"]["summary"]["completion_ok"] = completion
    snapshot["cursor"]["eventLineOffset"] = cur
    events = []
    if last:
        event = _events()[-1]
        event["event"]["name"] = last
        events = [event]
    state = _project(snapshot, events, {"cursor": {"eventLineOffset": prev}})
    flags = state["divergence"]["flags"]
    assert flags["cursorRegression"] is (prev > cur)
    assert flags["approvalCompletionConflict"] is (pending and completion is True)
    assert flags["activeMismatch"] is (
        active is not True and last in {"role_end", "iteration_start", "tests_end"}
    )
    assert state["divergence"]["any"] is any(flags.values())
    expected = "low" if any(flags.values()) else ("medium" if not last else "high")
    assert state["transition"]["confidence"] == expected
