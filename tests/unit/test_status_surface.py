"""The per-loop status surface as a pure function of the ops-dir documents (tuning spec §6)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from superloop_ops.core.loop import status_surface

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
FILES = {key: f"/repo/{key}" for key in status_surface.STATUS_FILE_KEYS}


def docs(**overrides: Any) -> status_surface.StatusDocuments:
    base = status_surface.StatusDocuments(repo_path="/repo", loop_id="L", summary_window=200, files=FILES)
    return dataclasses.replace(base, **overrides)


def test_only_health_file_gives_contract_defaults() -> None:
    document = status_surface.compute_status(docs(health={"status": "healthy"}), NOW)
    assert document == {
        "schemaVersion": "v1",
        "generatedAt": "2026-03-01T12:00:00Z",
        "source": {"repoPath": "/repo", "loopId": "L"},
        "lifecycle": {"state": "unknown", "confidence": None, "runId": None, "iteration": None},
        "health": {"status": "healthy"},
        "cursor": {"eventLineOffset": 0, "eventLineCount": 0},
        "control": {
            "lastIntent": None,
            "lastStatus": None,
            "lastRequestedBy": None,
            "lastTimestamp": None,
            "lastTraceId": None,
        },
        "reconcile": {
            "lastStatus": None,
            "lastTimestamp": None,
            "lastTransport": None,
            "lastFailureCode": None,
            "lastDurationSeconds": None,
            "lastTraceId": None,
        },
        "visibility": {"trace": {}},
        "tuning": {
            "summaryWindow": 200,
            "appliedProfile": None,
            "recommendedProfile": None,
            "confidence": None,
            "rationale": None,
            "telemetrySummary": None,
        },
        "traceLinkage": {
            "controlTraceId": None,
            "controlInvocationTraceId": None,
            "reconcileTraceId": None,
            "heartbeatTraceId": None,
            "sequenceTraceId": None,
            "alertTraceId": None,
            "sharedTraceId": None,
        },
        "files": FILES,
    }
    assert list(document["files"]) == list(status_surface.STATUS_FILE_KEYS)


def test_state_health_wins_over_health_file_and_lifecycle_from_state() -> None:
    state = {
        "transition": {"currentState": "running", "confidence": "high"},
        "run": {"runId": "run-1", "iteration": 0},
        "health": {"status": "degraded", "thresholds": {"profile": "strict"}},
        "cursor": {"eventLineOffset": 4, "eventLineCount": 5},
    }
    document = status_surface.compute_status(
        docs(state=state, health={"status": "healthy", "thresholds": {"profile": "relaxed"}}), NOW
    )
    assert document["health"]["status"] == "degraded"
    assert document["lifecycle"] == {
        "state": "running",
        "confidence": "high",
        "runId": "run-1",
        "iteration": 0,
    }
    assert document["cursor"] == {"eventLineOffset": 4, "eventLineCount": 5}
    assert document["tuning"]["appliedProfile"] == "strict"


def test_cursor_file_wins_over_state_cursor() -> None:
    document = status_surface.compute_status(
        docs(cursor={"eventLineOffset": 9}, state={"cursor": {"eventLineOffset": 4, "eventLineCount": 5}}),
        NOW,
    )
    assert document["cursor"] == {"eventLineOffset": 9, "eventLineCount": 5}


def test_heartbeat_visibility_from_state_then_rows() -> None:
    from_state = status_surface.compute_status(
        docs(
            heartbeat_state={
                "freshnessStatus": "degraded",
                "reasonCode": "runtime_heartbeat_stale",
                "lastHeartbeatAt": "2020-01-01T00:00:00Z",
                "heartbeatLagSeconds": 10,
                "updatedAt": "u",
                "transport": "local",
                "traceId": "hb-1",
            }
        ),
        NOW,
    )
    assert from_state["visibility"]["heartbeat"] == {
        "freshnessStatus": "degraded",
        "reasonCode": "runtime_heartbeat_stale",
        "lastHeartbeatAt": "2020-01-01T00:00:00Z",
        "heartbeatLagSeconds": 10,
        "updatedAt": "u",
        "transport": "local",
        "traceId": "hb-1",
    }
    from_row = status_surface.compute_status(
        docs(
            last_heartbeat={
                "timestamp": "t",
                "status": "failed",
                "reasonCode": "invalid_heartbeat_timestamp",
                "heartbeatAt": "bad",
                "traceId": "row",
            }
        ),
        NOW,
    )
    assert from_row["visibility"]["heartbeat"] == {
        "reasonCode": "invalid_heartbeat_timestamp",
        "lastHeartbeatAt": "bad",
        "updatedAt": "t",
        "traceId": "row",
    }


def test_health_details_fallbacks_are_read_from_health_file() -> None:
    document = status_surface.compute_status(
        docs(health={"details": {"heartbeatFreshnessStatus": "critical", "sequenceStatus": "ok"}}), NOW
    )
    assert document["visibility"]["heartbeat"] == {"freshnessStatus": "critical"}
    assert document["visibility"]["sequence"] == {"status": "ok"}


def test_sequence_visibility_drops_false_drift_flag() -> None:
    base = {
        "status": "ok",
        "driftActive": False,
        "violations": [],
        "snapshot": {"current": 2},
        "events": {"last": 2},
        "traceId": "s",
    }
    document = status_surface.compute_status(docs(sequence_state=base), NOW)
    view = document["visibility"]["sequence"]
    assert "driftActive" not in view
    assert view["violations"] == []
    assert (view["snapshotCurrent"], view["eventsLast"]) == (2, 2)
    drift = status_surface.compute_status(
        docs(sequence_state={**base, "driftActive": True, "status": "ordering_drift_detected"}), NOW
    )
    assert drift["visibility"]["sequence"]["driftActive"] is True


def test_invocation_audit_drops_false_replayed() -> None:
    row = {
        "timestamp": "t",
        "intent": "cancel",
        "transport": "local",
        "idempotencyKey": "k",
        "execution": {"status": "succeeded", "replayed": False},
        "confirmation": {"status": "confirmed"},
        "outcome": {"status": "confirmed"},
        "traceId": "c-1",
    }
    view = status_surface.compute_status(docs(last_invocation=row), NOW)["visibility"]["invocationAudit"]
    assert view == {
        "timestamp": "t",
        "intent": "cancel",
        "transport": "local",
        "idempotencyKey": "k",
        "executionStatus": "succeeded",
        "confirmationStatus": "confirmed",
        "outcomeStatus": "confirmed",
        "traceId": "c-1",
    }
    replayed = {**row, "execution": {"status": "succeeded", "replayed": True}}
    assert status_surface.compute_status(docs(last_invocation=replayed), NOW)["visibility"][
        "invocationAudit"
    ]["replayed"]


def test_two_shared_trace_rules_differ() -> None:
    document = status_surface.compute_status(
        docs(
            last_intent={"traceId": "ctl-1"},
            last_reconcile={"traceId": "ctl-1"},
            last_alert={"traceId": "ctl-1"},
            sequence_state={"traceId": "seq-9"},
            last_invocation={"traceId": "inv-2"},
        ),
        NOW,
    )
    assert document["traceLinkage"]["sharedTraceId"] == "ctl-1"
    assert "sharedTraceId" not in document["visibility"]["trace"]
    assert document["visibility"]["trace"]["controlInvocationTraceId"] == "inv-2"


def test_single_trace_source_is_shared_in_visibility_only() -> None:
    document = status_surface.compute_status(docs(last_reconcile={"traceId": "r-1", "status": "failed"}), NOW)
    assert document["visibility"]["trace"] == {"reconcileTraceId": "r-1", "sharedTraceId": "r-1"}
    assert document["traceLinkage"]["sharedTraceId"] is None
    assert document["reconcile"]["lastStatus"] == "failed"


def test_invocation_trace_does_not_break_sharing_and_control_falls_back() -> None:
    document = status_surface.compute_status(
        docs(
            last_control={"traceId": "x"},
            last_reconcile={"traceId": "x"},
            dispatch_state={"traceId": "x"},
            last_invocation={"traceId": "other"},
        ),
        NOW,
    )
    assert document["control"]["lastTraceId"] == "x"
    assert document["visibility"]["trace"]["sharedTraceId"] == "x"
    assert document["traceLinkage"]["sharedTraceId"] == "x"


def test_alert_trace_prefers_last_row_over_newer_state() -> None:
    document = status_surface.compute_status(
        docs(
            last_alert={"traceId": "old"}, dispatch_state={"traceId": "new", "status": "no_new_escalations"}
        ),
        NOW,
    )
    assert document["traceLinkage"]["alertTraceId"] == "old"
    assert document["alerts"]["dispatch"]["lastTraceId"] == "new"


def test_alerts_block_defaults() -> None:
    document = status_surface.compute_status(docs(dispatch_state={"status": "success"}), NOW)
    assert document["alerts"] == {
        "dispatch": {
            "status": "success",
            "processedCount": 0,
            "dispatchedCount": 0,
            "skippedCount": 0,
            "failedCount": 0,
            "failureReasonCodes": [],
            "escalationsLineOffset": 0,
            "escalationsLineCount": 0,
        }
    }
    failed_row = {
        "status": "failed_command",
        "reasonCode": "alert_dispatch_failed",
        "failedSinkCount": 0,
        "traceId": "t",
    }
    delivery = status_surface.compute_status(docs(last_alert=failed_row), NOW)["alerts"]
    assert delivery == {"lastDelivery": failed_row}


def test_drift_file_wins_over_state_drift_and_tuning_from_summary() -> None:
    summary = {"recommendedProfile": "strict", "confidence": "medium", "rationale": "r", "observed": {"a": 1}}
    document = status_surface.compute_status(
        docs(
            drift_state={"status": "drift_active"},
            state={"drift": {"status": "aligned", "traceId": "t"}},
            telemetry_summary=summary,
            summary_window=25,
        ),
        NOW,
    )
    assert document["drift"] == {"status": "drift_active"}
    assert document["tuning"] == {
        "summaryWindow": 25,
        "appliedProfile": None,
        "recommendedProfile": "strict",
        "confidence": "medium",
        "rationale": "r",
        "telemetrySummary": {"observed": {"a": 1}, "source": {}},
    }
    only_state = status_surface.compute_status(
        docs(state={"drift": {"status": "aligned", "traceId": "t"}}), NOW
    )
    assert only_state["drift"] == {"status": "aligned", "traceId": "t"}
    assert "drift" not in status_surface.compute_status(docs(), NOW)
