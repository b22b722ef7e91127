"""Loop status builder: conditions, mirrored surfaces, skip-write check, transition Events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from superloop_ops.core.common.merge_patch import apply_merge_patch, compute_merge_patch
from superloop_ops.core.common.status_conditions import find_condition
from superloop_ops.core.loop import loop_resource
from superloop_ops.settings import fetch_settings

NOW = dt.datetime(2026, 2, 22, 10, 0, 0, tzinfo=dt.UTC)


def _health(
    status: str = "healthy", codes: list[str] | None = None, severity: str = "degraded"
) -> dict[str, Any]:
    codes = codes or []
    return {
        "schemaVersion": "v1",
        "updatedAt": "2026-02-22T10:00:00Z",
        "status": status,
        "reasonCodes": codes,
        "reasons": [{"code": c, "severity": severity} for c in codes],
        "metrics": {"ingestLagSeconds": 3, "transportFailureStreak": 0},
    }


def _surface(state: str = "running", health: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schemaVersion": "v1",
        "generatedAt": "2026-02-22T10:00:00Z",
        "lifecycle": {"state": state, "confidence": "high", "runId": "r1", "iteration": 2},
        "health": health or _health(),
        "cursor": {"eventLineOffset": 4, "eventLineCount": 4},
        "control": {"lastIntent": None},
        "reconcile": {"lastStatus": "success", "lastTraceId": "t1"},
        "visibility": {"trace": {"reconcileTraceId": "t1"}},
        "files": {"stateFile": "/x"},
    }


def _view(outcome: str = "success", **kw: Any) -> loop_resource.LoopPassView:
    kw.setdefault("surface", _surface())
    kw.setdefault(
        "state", {"divergence": {"any": False, "flags": {}}, "transition": {"previousState": "none"}}
    )
    return loop_resource.LoopPassView(outcome=outcome, **kw)


def _cond(status: dict[str, Any], cond_type: str) -> dict[str, Any]:
    cond = find_condition(status["conditions"], cond_type)
    assert cond is not None
    return dict(cond)


def test_successful_pass_mirrors_surfaces_and_sets_conditions() -> None:
    status = loop_resource.build_loop_status(previous=None, view=_view(), generation=3, now=NOW)
    assert status["observedGeneration"] == 3
    assert status["lifecycle"] == "running"
    assert status["state"]["transition"] == {"previousState": "none"}
    assert status["healthStatus"] == "healthy"
    assert status["reasonCodes"] == []
    assert status["traceId"] == "t1"
    assert status["latestControl"] == {"lastIntent": None}
    assert status["cursor"] == {"eventLineOffset": 4, "eventLineCount": 4}
    assert "files" not in status
    assert "generatedAt" not in status
    assert _cond(status, "Ready")["status"] == "True"
    assert _cond(status, "Healthy")["reason"] == "Healthy"
    assert _cond(status, "Degraded")["status"] == "False"
    assert _cond(status, "Diverged")["status"] == "False"
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert status["lastReconcileAt"] == "2026-02-22T10:00:00Z"


def test_critical_reason_leads_the_degraded_condition() -> None:
    health = _health("critical", ["ingest_stale", "transport_unreachable"])
    health["reasons"] = [
        {"code": "ingest_stale", "severity": "degraded"},
        {"code": "transport_unreachable", "severity": "critical"},
    ]
    status = loop_resource.build_loop_status(
        previous=None, view=_view(surface=_surface(health=health)), generation=1, now=NOW
    )
    degraded = _cond(status, "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "TransportUnreachable"
    assert degraded["message"] == "critical: ingest_stale, transport_unreachable"
    assert _cond(status, "Healthy")["status"] == "False"


def test_divergence_sets_diverged_with_flags() -> None:
    state = {"divergence": {"any": True, "flags": {"activeMismatch": True, "cursorRegression": False}}}
    status = loop_resource.build_loop_status(previous=None, view=_view(state=state), generation=1, now=NOW)
    diverged = _cond(status, "Diverged")
    assert (diverged["status"], diverged["reason"]) == ("True", "DivergenceDetected")
    assert "activeMismatch" in diverged["message"]


def test_failed_ingest_sets_ready_false_with_failure_code() -> None:
    view = _view("failed", failure_code="service_request_failed", failure_message="curl\nerror: refused\n")
    status = loop_resource.build_loop_status(previous=None, view=view, generation=1, now=NOW)
    ready = _cond(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ServiceRequestFailed")
    assert ready["message"].endswith("error: refused")


def test_blocked_pass_keeps_previous_surfaces_and_health_conditions() -> None:
    first = loop_resource.build_loop_status(previous=None, view=_view(), generation=1, now=NOW)
    later = NOW + dt.timedelta(seconds=30)
    view = loop_resource.LoopPassView(
        outcome="blocked", blocked_reason="source_not_found", blocked_message="no dir /x"
    )
    status = loop_resource.build_loop_status(previous=first, view=view, generation=2, now=later)
    assert status["lifecycle"] == first["lifecycle"]
    assert status["health"] == first["health"]
    assert status["lastReconcileAt"] == first["lastReconcileAt"]
    ready = _cond(status, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "SourceNotFound", "no dir /x")
    assert ready["lastTransitionTime"] == "2026-02-22T10:00:30Z"
    healthy = _cond(status, "Healthy")
    assert healthy["status"] == "True"
    assert healthy["lastTransitionTime"] == "2026-02-22T10:00:00Z"
    assert healthy["observedGeneration"] == 2


def test_first_blocked_visit_sets_unknown_conditions() -> None:
    view = loop_resource.LoopPassView(
        outcome="blocked", blocked_reason="secret_not_found", blocked_message="m"
    )
    status = loop_resource.build_loop_status(previous=None, view=view, generation=1, now=NOW)
    assert _cond(status, "Healthy")["status"] == "Unknown"
    assert _cond(status, "Diverged")["status"] == "Unknown"
    assert "lifecycle" not in status


def test_active_profile_drift_sets_diverged() -> None:
    surface = _surface()
    surface["drift"] = {
        "status": "drift_active",
        "appliedProfile": "balanced",
        "recommendedProfile": "strict",
    }
    status = loop_resource.build_loop_status(
        previous=None, view=_view(surface=surface), generation=1, now=NOW
    )
    assert _cond(status, "Diverged")["reason"] == "ProfileDriftDetected"
    assert status["drift"]["status"] == "drift_active"


def test_suspended_is_stated_in_ready() -> None:
    status = loop_resource.build_loop_status(
        previous=None, view=loop_resource.LoopPassView(outcome="suspended"), generation=1, now=NOW
    )
    assert _cond(status, "Ready")["reason"] == "Suspended"


def test_unchanged_pass_is_skipped_until_refresh() -> None:
    first = loop_resource.build_loop_status(previous=None, view=_view(), generation=1, now=NOW)
    later = NOW + dt.timedelta(seconds=10)
    aged = _surface()
    aged["health"] = _health()
    aged["health"]["updatedAt"] = "2026-02-22T10:00:10Z"
    aged["health"]["metrics"]["ingestLagSeconds"] = 13
    second = loop_resource.build_loop_status(
        previous=first, view=_view(surface=aged), generation=1, now=later
    )
    assert not loop_resource.needs_status_write(first, second, now=later, refresh_seconds=300)
    much_later = NOW + dt.timedelta(seconds=301)
    assert loop_resource.needs_status_write(first, second, now=much_later, refresh_seconds=300)


def test_by_default_an_unchanged_status_is_never_rewritten() -> None:
    """Only self-ageing values changed: no PATCH, however long ago the status was written (a
    refresh every 300 s was half the status writes at 10,000 Loops)."""
    refresh = fetch_settings({}).status_refresh_seconds
    first = loop_resource.build_loop_status(previous=None, view=_view(), generation=1, now=NOW)
    stored = apply_merge_patch({}, first)  # as the server stores it
    a_day_later = NOW + dt.timedelta(days=1)
    aged = _surface()
    aged["health"] = _health()
    aged["health"]["metrics"]["ingestLagSeconds"] = 86_400
    second = loop_resource.build_loop_status(
        previous=first, view=_view(surface=aged), generation=1, now=a_day_later
    )
    assert not loop_resource.needs_status_write(first, second, now=a_day_later, refresh_seconds=refresh)
    patch = loop_resource.compute_status_patch(stored, second, now=a_day_later, refresh_seconds=refresh)
    assert patch is None
    assert loop_resource.needs_status_write(None, first, now=NOW, refresh_seconds=refresh)


def test_real_change_is_written() -> None:
    first = loop_resource.build_loop_status(previous=None, view=_view(), generation=1, now=NOW)
    second = loop_resource.build_loop_status(
        previous=first, view=_view(surface=_surface("complete")), generation=1, now=NOW
    )
    assert loop_resource.needs_status_write(first, second, now=NOW, refresh_seconds=300)
    assert loop_resource.needs_status_write(None, first, now=NOW, refresh_seconds=300)


def test_status_patch_compares_what_the_server_stores() -> None:
    """The server drops nested nulls; a stored status equal to the computed one modulo nested nulls
    needs no patch, and a nested key no longer computed is removed with an explicit null."""
    surface = _surface()
    surface["health"]["metrics"]["notYetKnown"] = None
    first = loop_resource.build_loop_status(previous=None, view=_view(surface=surface), generation=1, now=NOW)
    sent = loop_resource.compute_status_patch(None, first, now=NOW, refresh_seconds=300)
    assert sent is not None
    stored = apply_merge_patch({}, sent)
    later = NOW + dt.timedelta(seconds=10)
    again = loop_resource.build_loop_status(
        previous=stored, view=_view(surface=surface), generation=1, now=later
    )
    assert loop_resource.compute_status_patch(stored, again, now=later, refresh_seconds=300) is None
    stored["health"]["metrics"]["gone"] = 1
    patch = loop_resource.compute_status_patch(stored, again, now=later, refresh_seconds=300)
    assert patch is not None
    assert patch["health"] == {"metrics": {"gone": None}}
    assert "gone" not in apply_merge_patch(stored, patch)["health"]["metrics"]


def test_status_patch_of_an_aged_status_waits_for_the_refresh() -> None:
    first = apply_merge_patch(
        {}, loop_resource.build_loop_status(previous=None, view=_view(), generation=1, now=NOW)
    )
    aged = _surface()
    aged["health"]["metrics"]["ingestLagSeconds"] = 99
    later = NOW + dt.timedelta(seconds=10)
    second = loop_resource.build_loop_status(
        previous=first, view=_view(surface=aged), generation=1, now=later
    )
    assert loop_resource.compute_status_patch(first, second, now=later, refresh_seconds=300) is None
    much_later = NOW + dt.timedelta(seconds=301)
    refreshed = loop_resource.compute_status_patch(first, second, now=much_later, refresh_seconds=300)
    assert refreshed is not None
    assert refreshed["health"]["metrics"]["ingestLagSeconds"] == 99


def test_status_patch_removes_owned_keys_only() -> None:
    first = apply_merge_patch(
        {}, loop_resource.build_loop_status(previous=None, view=_view(), generation=1, now=NOW)
    )
    stored = {**first, "replayHandled": "from-start@x", "someoneElses": {"a": 1}}
    patch = loop_resource.compute_status_patch(stored, first, now=NOW, refresh_seconds=300)
    assert patch == {"replayHandled": None}


def test_events_on_lifecycle_and_health_transitions() -> None:
    first = loop_resource.build_loop_status(previous=None, view=_view(), generation=1, now=NOW)
    events = loop_resource.compute_loop_events(None, first)
    assert [(e.type, e.reason) for e in events] == [("Normal", "LifecycleChanged")]
    degraded = _surface("complete", _health("degraded", ["runtime_heartbeat_stale"]))
    second = loop_resource.build_loop_status(
        previous=first, view=_view(surface=degraded), generation=1, now=NOW
    )
    reasons = [(e.type, e.reason) for e in loop_resource.compute_loop_events(first, second)]
    assert reasons == [("Normal", "LifecycleChanged"), ("Warning", "HealthDegraded")]
    third = loop_resource.build_loop_status(
        previous=second, view=_view(surface=_surface("complete")), generation=1, now=NOW
    )
    assert [e.reason for e in loop_resource.compute_loop_events(second, third)] == ["HealthRecovered"]
    assert loop_resource.compute_loop_events(third, third) == []


def test_events_for_ready_divergence_drift_and_replay() -> None:
    first = loop_resource.build_loop_status(previous=None, view=_view(), generation=1, now=NOW)
    failed = loop_resource.build_loop_status(
        previous=first, view=_view("failed", failure_code="snapshot_unavailable"), generation=1, now=NOW
    )
    assert ("Warning", "SnapshotUnavailable") in [
        (e.type, e.reason) for e in loop_resource.compute_loop_events(first, failed)
    ]
    state = {"divergence": {"any": True, "flags": {"approvalCompletionConflict": True}}}
    view = _view(
        state=state,
        sequence={"driftActive": True, "violations": ["event_sequence_regression"]},
        replay_token="from-start@",
    )
    recovered = loop_resource.build_loop_status(previous=failed, view=view, generation=1, now=NOW)
    reasons = [e.reason for e in loop_resource.compute_loop_events(failed, recovered)]
    assert reasons == [
        "ReconcileRecovered",
        "DivergenceDetected",
        "OrderingDriftDetected",
        "ReplayedFromStart",
    ]


def test_replay_token_parsing_and_one_shot_bookkeeping() -> None:
    assert loop_resource.compute_replay_token(None) is None
    assert loop_resource.compute_replay_token({"ops.superloop.dev/replay": "later"}) is None
    token = loop_resource.compute_replay_token(
        {
            "ops.superloop.dev/replay": "from-start",
            "ops.superloop.dev/replay-requested-at": "2026-02-22T09:00:00Z",
        }
    )
    assert token == "from-start@2026-02-22T09:00:00Z"
    handled = loop_resource.build_loop_status(
        previous=None, view=_view(replay_token=token), generation=1, now=NOW
    )
    assert handled["replayHandled"] == token
    still = loop_resource.build_loop_status(
        previous=handled, view=_view(replay_pending=True), generation=1, now=NOW
    )
    assert still["replayHandled"] == token
    removed = loop_resource.build_loop_status(previous=still, view=_view(), generation=1, now=NOW)
    assert "replayHandled" not in removed


_KEYS = st.sampled_from(["health", "metrics", "status", "traceId", "updatedAt", "lag", "conditions", "drift"])
_LEAVES = st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["a", "b"]))
_DOCS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=12,
)


@given(
    previous=st.dictionaries(_KEYS, _DOCS, max_size=4),
    new=st.dictionaries(_KEYS, _DOCS, max_size=4),
    aged=st.booleans(),
)
def test_status_patch_decides_as_the_fingerprint_comparison(
    previous: dict[str, Any], new: dict[str, Any], aged: bool
) -> None:
    """Walking only the patch decides exactly as comparing the fingerprints of the stored status
    before and after it."""
    stored = apply_merge_patch({}, previous)
    stored["lastReconcileAt"] = "2026-02-22T09:00:00Z" if aged else "2026-02-22T10:00:00Z"
    new = {**new, "lastReconcileAt": "2026-02-22T10:00:05Z"}
    patch = compute_merge_patch(stored, new, owned=loop_resource.OWNED_KEYS)
    decided = loop_resource.compute_status_patch(stored, new, now=NOW, refresh_seconds=300)
    expected = bool(patch) and loop_resource.needs_status_write(
        stored, apply_merge_patch(stored, patch), now=NOW, refresh_seconds=300
    )
    assert (decided is not None) == expected


def _with_outcome(outcome: str, *reasons: dict[str, Any]) -> dict[str, Any]:
    return {"health": {"metrics": {"runOutcome": outcome}, "reasons": list(reasons)}}


def test_a_dead_run_is_an_event_on_the_pass_that_finds_it() -> None:
    running = _with_outcome("running")
    dead = _with_outcome(
        "dead", {"code": "run_dead", "severity": "critical", "observed": "active_without_active_run"}
    )
    (event,) = loop_resource.compute_loop_events(running, dead)
    assert (event.type, event.reason) == ("Warning", "RunDead")
    assert "active-run.json gone" in event.message
    assert "active_without_active_run" in event.message
    assert loop_resource.compute_loop_events(dead, dead) == []


def test_a_cancel_is_a_normal_event_and_complete_adds_none() -> None:
    cancelled = _with_outcome("cancelled", {"code": "run_cancelled", "severity": "info"})
    (event,) = loop_resource.compute_loop_events(_with_outcome("running"), cancelled)
    assert (event.type, event.reason) == ("Normal", "RunCancelled")
    assert loop_resource.compute_loop_events(_with_outcome("running"), _with_outcome("complete")) == []
