"""kubectl-superloop: the status snapshot rebuilt from a Loop's status, and the flags kubectl users expect."""

from __future__ import annotations

import datetime as dt

from superloop_ops.cli import kubectl_plugin

NOW = dt.datetime(2026, 2, 22, 10, 0, 0, tzinfo=dt.UTC)


def _loop(status: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {"name": "l1", "namespace": "ns"},
        "spec": {"loopId": "demo-loop"},
        "status": status,
    }


def test_snapshot_from_a_reconciled_loop() -> None:
    status: dict[str, object] = {
        "lifecycle": "running",
        "healthStatus": "degraded",
        "transport": "sprite_service",
        "traceId": "t-1",
        "lastReconcileAt": "2026-02-22T09:59:58Z",
        "state": {"transition": {"confidence": "high"}, "run": {"runId": "r1", "iteration": 3}},
        "health": {"status": "degraded", "reasonCodes": ["transport_unreachable"]},
        "cursor": {"eventLineOffset": 7, "eventLineCount": 7},
        "latestControl": {"lastIntent": "cancel", "lastStatus": "confirmed"},
        "transportHealth": {"lastFailureCode": "service_request_failed"},
        "visibility": {"trace": {"reconcileTraceId": "t-1", "sharedTraceId": "t-1"}},
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ServiceRequestFailed", "message": "m"},
            {"type": "Healthy", "status": "False", "reason": "TransportUnreachable", "message": "m"},
        ],
    }
    snap = kubectl_plugin.build_status_snapshot(_loop(status), NOW)
    assert list(snap)[:8] == [
        "schemaVersion",
        "generatedAt",
        "source",
        "lifecycle",
        "health",
        "cursor",
        "control",
        "reconcile",
    ]
    assert snap["generatedAt"] == "2026-02-22T10:00:00Z"
    assert snap["source"] == {"namespace": "ns", "loop": "l1", "loopId": "demo-loop"}
    assert snap["lifecycle"] == {"state": "running", "confidence": "high", "runId": "r1", "iteration": 3}
    assert snap["health"]["reasonCodes"] == ["transport_unreachable"]
    assert snap["control"]["lastIntent"] == "cancel"
    assert snap["reconcile"]["lastStatus"] == "failed"
    assert snap["reconcile"]["lastFailureCode"] == "service_request_failed"
    assert snap["reconcile"]["lastTransport"] == "sprite_service"
    assert snap["traceLinkage"]["reconcileTraceId"] == "t-1"
    assert [c["type"] for c in snap["conditions"]] == ["Ready", "Healthy"]
    assert "drift" not in snap


def test_snapshot_defaults_for_a_loop_never_reconciled() -> None:
    snap = kubectl_plugin.build_status_snapshot(_loop({}), NOW)
    assert snap["lifecycle"]["state"] == "unknown"
    assert snap["health"] == {}
    assert snap["cursor"] == {"eventLineOffset": 0, "eventLineCount": 0}
    assert snap["control"]["lastStatus"] is None
    assert snap["reconcile"]["lastStatus"] is None


def test_parser_honours_kubectl_flags() -> None:
    args = kubectl_plugin.build_parser().parse_args(
        ["--kubeconfig", "/k", "--context", "alice", "-n", "team", "approve", "hi-1", "--note", "ok"]
    )
    assert (args.kubeconfig, args.context, args.namespace) == ("/k", "alice", "team")
    assert (args.command, args.intent, args.note) == ("approve", "hi-1", "ok")
