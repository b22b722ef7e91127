"""Alert dispatch planning (§5): row classification, payloads, outcomes, cursor/ledger, run summary."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superloop_ops.core.alerts import dispatch_plan, sink_catalog

NOW = dt.datetime(2026, 2, 22, 11, 0, 5, tzinfo=dt.UTC)
SHIPPED = sink_catalog.build_sink_catalog(
    json.loads(
        (Path(__file__).resolve().parents[2] / "config" / "ops-manager-alert-sinks.v1.json").read_text()
    )
)


def catalog_with(
    *sink_entries: tuple[str, dict[str, Any]], min_severity: str = "warning"
) -> sink_catalog.SinkCatalog:
    ids = [sink_id for sink_id, _ in sink_entries]
    return sink_catalog.build_sink_catalog(
        {
            "schemaVersion": "v1",
            "defaultMinSeverity": "warning",
            "sinks": dict(sink_entries),
            "routing": {
                "defaultSinks": ids,
                "categorySeverity": {"health_degraded": "warning", "health_critical": "critical"},
                "routes": [{"category": "health_degraded", "sinks": ids, "minSeverity": min_severity}],
            },
        }
    )


WEBHOOK = (
    "hook",
    {
        "enabled": True,
        "type": "webhook",
        "urlEnv": "HOOK_URL",
        "authTokenEnv": "HOOK_TOKEN",
        "headers": {"X-Team": "ops", "content-type": "text/plain"},
    },
)
SLACK = ("chat", {"enabled": True, "type": "slack", "webhookUrlEnv": "SLACK_URL", "channel": "#ops"})
PAGER = ("pager", {"enabled": True, "type": "pagerduty_events", "routingKeyEnv": "PD_KEY", "component": "c1"})
ESCALATION = {
    "timestamp": "2026-02-22T11:00:00Z",
    "loopId": "demo-loop",
    "traceId": "trace-esc",
    "category": "health_degraded",
    "reasonCodes": ["ingest_stale"],
}


def plan_line(
    text: str, catalog: sink_catalog.SinkCatalog = SHIPPED, env: dict[str, str] | None = None
) -> Any:
    return dispatch_plan.plan_row(
        text,
        1,
        loop_id="demo-loop",
        trace_id="trace-run",
        catalog=catalog,
        source_file="c.json",
        env=env or {},
        now=NOW,
    )


def test_blank_line_is_skipped_without_telemetry() -> None:
    decision = plan_line("   ")
    assert decision == dispatch_plan.RowTerminal(counter="skipped", reason_code=None, telemetry=None)


def test_invalid_json_row() -> None:
    decision = plan_line("{not json")
    assert isinstance(decision, dispatch_plan.RowTerminal)
    assert decision.counter == "failed"
    assert decision.telemetry == {
        "timestamp": "2026-02-22T11:00:05Z",
        "loopId": "demo-loop",
        "traceId": "trace-run",
        "category": "alert_dispatch",
        "status": "failed",
        "reasonCode": "invalid_escalation_json",
        "rawLine": "{not json",
    }


@pytest.mark.parametrize("text", ['{"category": ""}', '{"category": false}', '"text"', "[1]", "3"])
def test_missing_category_and_non_object_rows(text: str) -> None:
    decision = plan_line(text)
    assert isinstance(decision, dispatch_plan.RowTerminal)
    assert decision.reason_code == "missing_escalation_category"
    assert decision.telemetry is not None
    assert decision.telemetry["escalation"] == json.loads(text)


def test_invalid_row_severity_fails_route_resolution() -> None:
    decision = plan_line(json.dumps({**ESCALATION, "severity": "loud"}))
    assert isinstance(decision, dispatch_plan.RowTerminal)
    assert decision.reason_code == "route_resolution_failed"
    assert decision.telemetry is not None
    assert decision.telemetry["message"] == "error: --severity must be one of: info, warning, critical"
    assert decision.telemetry["escalationTraceId"] == "trace-esc"


def test_shipped_catalog_skips_with_no_dispatchable_sinks() -> None:
    decision = plan_line(json.dumps(ESCALATION))
    assert isinstance(decision, dispatch_plan.RowTerminal)
    assert decision.counter == "skipped"
    row = decision.telemetry
    assert row is not None
    assert row["reasonCode"] == "no_dispatchable_sinks"
    assert row["eventSeverity"] == "warning"
    assert row["escalationCategory"] == "health_degraded"
    assert row["escalationTimestamp"] == "2026-02-22T11:00:00Z"
    assert (row["sinkCount"], row["dispatchedSinkCount"], row["failedSinkCount"]) == (0, 0, 0)
    assert row["traceId"] == "trace-run"
    assert row["route"]["category"] == "health_degraded"


def test_severity_below_min_is_skipped() -> None:
    catalog = catalog_with(WEBHOOK, min_severity="critical")
    decision = plan_line(json.dumps(ESCALATION), catalog)
    assert isinstance(decision, dispatch_plan.RowTerminal)
    assert decision.reason_code == "severity_below_min"


def test_missing_secret_does_not_block_routing() -> None:
    """Fix of §8.10: a missing secret no longer fails the row at routing time."""
    decision = plan_line(json.dumps(ESCALATION), catalog_with(WEBHOOK, SLACK), env={"SLACK_URL": "http://s"})
    assert isinstance(decision, dispatch_plan.RowDelivery)
    assert [sink["id"] for sink in decision.sinks] == ["hook", "chat"]
    hook = dispatch_plan.build_sink_request(
        decision.sinks[0], decision, {"SLACK_URL": "http://s"}, repo_path="/r", now=NOW
    )
    assert hook == {
        "status": "failed",
        "reasonCode": "missing_secret",
        "httpStatus": None,
        "message": "webhook url env is unset",
    }
    chat = dispatch_plan.build_sink_request(
        decision.sinks[1], decision, {"SLACK_URL": "http://s"}, repo_path="/r", now=NOW
    )
    assert isinstance(chat, dispatch_plan.SinkRequest)


def _delivery(escalation: dict[str, Any] = ESCALATION) -> dispatch_plan.RowDelivery:
    decision = plan_line(json.dumps(escalation), catalog_with(WEBHOOK, SLACK, PAGER))
    assert isinstance(decision, dispatch_plan.RowDelivery)
    return decision


def test_webhook_request_headers_and_body() -> None:
    delivery = _delivery()
    secrets = {"HOOK_URL": "http://hook.example/in", "HOOK_TOKEN": "tok-123"}
    request = dispatch_plan.build_sink_request(
        delivery.sinks[0], delivery, secrets, repo_path="/abs/repo", now=NOW
    )
    assert isinstance(request, dispatch_plan.SinkRequest)
    assert request.url == "http://hook.example/in"
    names = [name for name, _ in request.headers]
    assert names == ["Content-Type", "Authorization", "X-Team", "Idempotency-Key"]
    assert dict(request.headers)["Authorization"] == "Bearer tok-123"
    assert dict(request.headers)["Idempotency-Key"] == f"{delivery.context.escalation_key}:hook"
    assert request.body == {
        "schemaVersion": "v1",
        "emittedAt": "2026-02-22T11:00:05Z",
        "source": {
            "repoPath": "/abs/repo",
            "loopId": "demo-loop",
            "channel": "ops_manager_alert_dispatch",
            "traceId": "trace-esc",
        },
        "event": {"category": "health_degraded", "severity": "warning"},
        "sink": {"id": "hook", "type": "webhook"},
        "escalation": ESCALATION,
    }
    assert set(request.secrets) == {"http://hook.example/in", "tok-123"}


def test_slack_payload_keeps_reference_text_quirks() -> None:
    delivery = _delivery()
    request = dispatch_plan.build_sink_request(
        delivery.sinks[1], delivery, {"SLACK_URL": "http://s"}, repo_path="/r", now=NOW
    )
    assert isinstance(request, dispatch_plan.SinkRequest)
    text = "[ops-manager][warning] health_degraded loop=demo-loop trace=trace-esc"
    assert request.body == {
        "text": text,
        "channel": "#ops",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*Ops Manager Alert*\\nCategory: `" + text + "`"},
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "Escalation timestamp: `2026-02-22T11:00:00Z`"},
                    {"type": "mrkdwn", "text": "Trace: `trace-esc`"},
                ],
            },
        ],
    }
    assert request.headers == (("Content-Type", "application/json"),)


def test_slack_without_timestamp() -> None:
    escalation = {key: value for key, value in ESCALATION.items() if key != "timestamp"}
    payload = dispatch_plan.build_slack_payload(_delivery(escalation).context, "warning", {})
    assert payload["blocks"][1]["elements"][0]["text"] == "Escalation timestamp unavailable"
    assert "channel" not in payload


def test_pagerduty_events_v2_payload() -> None:
    delivery = _delivery()
    request = dispatch_plan.build_sink_request(
        delivery.sinks[2],
        delivery,
        {"PD_KEY": "rk-1"},
        repo_path="/r",
        now=NOW,
        pagerduty_url="http://pd/enqueue",
    )
    assert isinstance(request, dispatch_plan.SinkRequest)
    assert request.url == "http://pd/enqueue"
    assert request.body == {
        "routing_key": "rk-1",
        "event_action": "trigger",
        "dedup_key": "demo-loop:health_degraded:2026-02-22T11:00:00Z",
        "payload": {
            "summary": "ops-manager health_degraded (warning) loop=demo-loop",
            "severity": "warning",
            "source": "superloop-ops-manager",
            "component": "c1",
            "group": "loop-run",
            "class": "escalation",
            "custom_details": {"escalation": ESCALATION, "traceId": "trace-esc"},
        },
    }


def test_unsupported_sink_type_result() -> None:
    result = dispatch_plan.build_sink_request(
        {"id": "x", "type": "email"}, _delivery(), {}, repo_path="/r", now=NOW
    )
    assert result == {
        "status": "failed",
        "reasonCode": "unsupported_sink_type",
        "httpStatus": None,
        "message": "unsupported sink type: email",
    }


def test_response_classification_and_redaction() -> None:
    assert dispatch_plan.classify_response(202, "") == {
        "status": "success",
        "httpStatus": 202,
        "reasonCode": None,
        "message": None,
    }
    failed = dispatch_plan.classify_response(
        500, "boom\nat https://secret.example/x " + "y" * 400, ["https://secret.example/x"]
    )
    assert failed["reasonCode"] == "http_error"
    assert failed["httpStatus"] == 500
    assert "secret.example" not in failed["message"]
    assert "\n" not in failed["message"]
    assert len(failed["message"]) == 300
    error = dispatch_plan.classify_request_error("ConnectError: refused")
    assert error == {
        "status": "failed",
        "reasonCode": "request_failed",
        "httpStatus": None,
        "message": "ConnectError: refused",
    }


@pytest.mark.parametrize(
    ("result", "disposition"),
    [
        ({"status": "success", "httpStatus": 200}, "delivered"),
        ({"status": "failed", "reasonCode": "http_error", "httpStatus": 503}, "pending"),
        ({"status": "failed", "reasonCode": "http_error", "httpStatus": 429}, "pending"),
        ({"status": "failed", "reasonCode": "http_error", "httpStatus": 400}, "failed"),
        ({"status": "failed", "reasonCode": "http_error", "httpStatus": 404}, "failed"),
        ({"status": "failed", "reasonCode": "request_failed", "httpStatus": None}, "pending"),
        ({"status": "failed", "reasonCode": "missing_secret"}, "pending"),
        ({"status": "failed", "reasonCode": "unsupported_sink_type"}, "failed"),
        ({"status": "failed"}, "failed"),
    ],
)
def test_sink_disposition(result: dict[str, Any], disposition: str) -> None:
    assert dispatch_plan.compute_sink_disposition(result) == disposition


@pytest.mark.parametrize(
    ("statuses", "outcome"),
    [
        (["success", "success"], ("dispatched", None)),
        (["success", "failed"], ("partial", "partial_dispatch_failure")),
        (["failed", "failed"], ("failed", "dispatch_failed")),
    ],
)
def test_row_outcome(statuses: list[str], outcome: tuple[str, str | None]) -> None:
    assert dispatch_plan.compute_row_outcome([{"status": status} for status in statuses]) == outcome


def test_counters_and_run_status() -> None:
    counters = dispatch_plan.DispatchCounters()
    assert dispatch_plan.compute_run_status(counters) == "no_new_escalations"
    counters = counters.add_skipped()
    assert dispatch_plan.compute_run_status(counters) == "success"
    counters = counters.add_delivery(
        "partial", [{"status": "success"}, {"status": "failed", "reasonCode": None}]
    )
    assert (counters.processed, counters.dispatched, counters.failed) == (2, 1, 1)
    assert counters.failure_codes == {"sink_dispatch_failed"}
    assert dispatch_plan.compute_run_status(counters) == "partial"
    only_failed = dispatch_plan.DispatchCounters().add_failed("invalid_escalation_json")
    assert dispatch_plan.compute_run_status(only_failed) == "failed"


def test_delivery_telemetry_row_shape() -> None:
    delivery = _delivery()
    results: list[dict[str, Any]] = [
        {
            "id": "hook",
            "type": "webhook",
            "status": "success",
            "httpStatus": 200,
            "reasonCode": None,
            "message": None,
        },
        {
            "id": "chat",
            "type": "slack",
            "status": "failed",
            "reasonCode": "request_failed",
            "httpStatus": None,
            "message": "x",
        },
    ]
    row = dispatch_plan.build_delivery_telemetry(delivery, results, pending_sink_ids=["chat"], now=NOW)
    assert row["status"] == "partial"
    assert row["reasonCode"] == "partial_dispatch_failure"
    assert (row["sinkCount"], row["dispatchedSinkCount"], row["failedSinkCount"]) == (2, 1, 1)
    assert row["loopId"] == "demo-loop"
    assert row["traceId"] == "trace-run"
    assert row["escalationTraceId"] == "trace-esc"
    assert row["retryPending"] is True
    assert row["pendingSinkIds"] == ["chat"]
    assert row["sinks"][0]["reasonCode"] is None
    done = dispatch_plan.build_delivery_telemetry(delivery, results[:1], pending_sink_ids=[], now=NOW)
    assert "reasonCode" not in done
    assert "retryPending" not in done


def test_cursor_advances_only_over_complete_prefix() -> None:
    entry = dispatch_plan.LedgerEntry
    cursor = dispatch_plan.DispatchCursor(
        offset=2,
        ledger={
            3: entry(3, "f3", "k3", complete=True),
            4: entry(4, "f4", "k4", complete=False, sinks={"a": "delivered", "b": "pending"}),
            5: entry(5, "f5", "k5", complete=True),
        },
    )
    advanced = dispatch_plan.compute_advanced_cursor(cursor)
    assert advanced.offset == 3
    assert sorted(advanced.ledger) == [4, 5]
    assert advanced.pending_count == 1


def test_state_round_trips_through_json() -> None:
    cursor = dispatch_plan.DispatchCursor(
        offset=1,
        ledger={
            2: dispatch_plan.LedgerEntry(
                2, "fp", "key", attempts=1, next_attempt_at="2026-02-22T11:01:00Z", sinks={"a": "pending"}
            )
        },
    )
    state = dispatch_plan.build_dispatch_state(
        status="failed",
        counters=dispatch_plan.DispatchCounters().add_failed("request_failed"),
        cursor=cursor,
        line_count=2,
        loop_id="demo-loop",
        trace_id="t",
        escalations_file="e",
        telemetry_file="a",
        now=NOW,
    )
    assert list(state)[:14] == [
        "schemaVersion",
        "updatedAt",
        "loopId",
        "traceId",
        "escalationsFile",
        "dispatchTelemetryFile",
        "status",
        "processedCount",
        "dispatchedCount",
        "skippedCount",
        "failedCount",
        "failureReasonCodes",
        "escalationsLineOffset",
        "escalationsLineCount",
    ]
    parsed = dispatch_plan.parse_dispatch_state(json.loads(json.dumps(state)))
    assert parsed == cursor
    assert not dispatch_plan.is_due(parsed.ledger[2], NOW)
    assert dispatch_plan.is_due(parsed.ledger[2], NOW + dt.timedelta(minutes=1))


@pytest.mark.parametrize(
    "previous",
    [
        None,
        [],
        {"escalationsLineOffset": -1},
        {"escalationsLineOffset": "2"},
        {"escalationsLineOffset": True},
    ],
)
def test_malformed_offsets_read_as_zero(previous: object) -> None:
    assert dispatch_plan.parse_dispatch_state(previous).offset == 0


def test_next_attempt_backs_off_exponentially_with_cap() -> None:
    assert (
        dispatch_plan.compute_next_attempt_at(1, NOW, base_seconds=30, cap_seconds=900)
        == "2026-02-22T11:00:35Z"
    )
    assert (
        dispatch_plan.compute_next_attempt_at(3, NOW, base_seconds=30, cap_seconds=900)
        == "2026-02-22T11:02:05Z"
    )
    assert (
        dispatch_plan.compute_next_attempt_at(20, NOW, base_seconds=30, cap_seconds=900)
        == "2026-02-22T11:15:05Z"
    )


def test_escalation_key_is_stable_per_row() -> None:
    text = json.dumps(ESCALATION)
    assert dispatch_plan.compute_escalation_key("l", 3, text) == dispatch_plan.compute_escalation_key(
        "l", 3, text
    )
    assert dispatch_plan.compute_escalation_key("l", 3, text) != dispatch_plan.compute_escalation_key(
        "l", 4, text
    )


@given(st.integers(min_value=0, max_value=5), st.lists(st.booleans(), max_size=12))
def test_cursor_never_skips_an_incomplete_row(offset: int, completes: list[bool]) -> None:
    ledger = {
        offset + 1 + index: dispatch_plan.LedgerEntry(offset + 1 + index, "f", "k", complete=done)
        for index, done in enumerate(completes)
    }
    advanced = dispatch_plan.compute_advanced_cursor(dispatch_plan.DispatchCursor(offset, ledger))
    moved = advanced.offset - offset
    assert all(completes[:moved])
    assert moved == len(completes) or not completes[moved]
    assert advanced.pending_count == completes.count(False)
    assert all(line > advanced.offset for line in advanced.ledger)
