"""Pure control rules: intents, confirmation truth table, service response mapping, journal rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from superloop_ops.core.loop import control_rules
from superloop_ops.errors import ContractError

NOW = dt.datetime(2026, 2, 22, 10, 0, 30, tzinfo=dt.UTC)
START = NOW - dt.timedelta(seconds=2)


# --- intents and commands ----------------------------------------------------------------------


@pytest.mark.parametrize("intent", ["cancel", "approve", "reject"])
def test_valid_intents(intent: str) -> None:
    assert control_rules.validate_intent(intent) == intent


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "--intent is required"),
        (None, "--intent is required"),
        ("unknown", "intent must be one of: cancel, approve, reject"),
        ("Cancel", "intent must be one of: cancel, approve, reject"),
    ],
)
def test_invalid_intents_fail_closed(value: object, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        control_rules.validate_intent(value)


def test_default_idempotency_key() -> None:
    assert control_rules.build_default_idempotency_key("cancel", 1771754404, 1234) == "cancel-1771754404-1234"
    assert control_rules.build_default_idempotency_key("reject", 1, 2, "ab12") == "reject-1-2-ab12"


@pytest.mark.parametrize(
    ("intent", "note", "expected"),
    [
        ("cancel", "ignored", ["sl", "cancel", "--repo", "/r"]),
        ("approve", "", ["sl", "approve", "--repo", "/r", "--loop", "demo", "--by", "alice"]),
        (
            "approve",
            "Looks good",
            ["sl", "approve", "--repo", "/r", "--loop", "demo", "--by", "alice", "--note", "Looks good"],
        ),
        (
            "reject",
            "nope",
            [
                "sl",
                "approve",
                "--repo",
                "/r",
                "--loop",
                "demo",
                "--by",
                "alice",
                "--reject",
                "--note",
                "nope",
            ],
        ),
    ],
)
def test_runtime_argv(intent: control_rules.Intent, note: str, expected: list[str]) -> None:
    argv = control_rules.build_runtime_argv(("sl",), intent, repo="/r", loop_id="demo", by="alice", note=note)
    assert argv == expected


def test_format_command_quotes_arguments() -> None:
    assert (
        control_rules.format_command(["sl", "approve", "--note", "Looks good"])
        == "sl approve --note 'Looks good'"
    )


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("a\r\nb\r\n", {}, "a\nb"),
        ("\n".join(str(i) for i in range(50)) + "\n", {}, "\n".join(str(i) for i in range(10, 50))),
        ("a\n\n  \nb\n\n", {"skip_blank": True}, "a\nb"),
        ("x\n\ny\n\n\n", {}, "x\n\ny"),
        ("", {}, ""),
    ],
)
def test_tail_lines(text: str, kwargs: dict[str, Any], expected: str) -> None:
    assert control_rules.tail_lines(text, **kwargs) == expected


# --- confirmation ------------------------------------------------------------------------------


def _snapshot(
    *,
    status: Any = "running",
    last_event: Any = "iteration_start",
    approval: Any = None,
    active: Any = True,
    completion_ok: Any = False,
) -> dict[str, Any]:
    return {
        "run": {"status": status, "summary": {"completion_ok": completion_ok}},
        "health": {"lastEventName": last_event},
        "runtime": {
            "approval": None if approval is None else {"status": approval},
            "superloopState": None if active is None else {"active": active},
        },
    }


def test_observation_defaults_on_empty_snapshot() -> None:
    assert control_rules.build_observation({}) == control_rules.Observation(
        "unknown", None, None, False, False
    )


def test_observation_reads_the_five_fields() -> None:
    observed = control_rules.build_observation(
        _snapshot(
            status="complete",
            last_event="loop_complete",
            approval="approved",
            active=False,
            completion_ok=True,
        )
    )
    assert observed == control_rules.Observation("complete", "loop_complete", "approved", False, True)


def test_observation_treats_non_true_as_false() -> None:
    observed = control_rules.build_observation(_snapshot(active="true", completion_ok="true", last_event=""))
    assert observed.active is False
    assert observed.completion_ok is False
    assert observed.last_event is None


@pytest.mark.parametrize(
    ("intent", "snapshot", "expected"),
    [
        ("cancel", _snapshot(), (False, "timeout")),
        ("cancel", _snapshot(active=False), (False, "timeout")),  # still "running" per snapshot
        ("cancel", _snapshot(status="unknown", active=True), (False, "timeout")),
        ("cancel", _snapshot(status="stopped", active=False), (True, "inactive_not_running")),
        ("cancel", _snapshot(status="unknown", active=None), (True, "inactive_not_running")),
        ("approve", _snapshot(), (False, "timeout")),
        ("approve", _snapshot(completion_ok=True), (True, "completion_observed")),
        ("approve", _snapshot(status="complete"), (True, "completion_observed")),
        ("approve", _snapshot(last_event="loop_complete"), (True, "completion_observed")),
        ("approve", _snapshot(last_event="approval_decision"), (False, "timeout")),
        ("reject", _snapshot(), (False, "timeout")),
        ("reject", _snapshot(approval="rejected"), (True, "rejection_observed")),
        ("reject", _snapshot(last_event="approval_rejected"), (True, "rejection_observed")),
        # reference quirk kept: any approval_decision confirms a reject, even an approval
        (
            "reject",
            _snapshot(last_event="approval_decision", approval="approved"),
            (True, "rejection_observed"),
        ),
        ("reject", _snapshot(approval="pending"), (False, "timeout")),
    ],
)
def test_confirmation_truth_table(
    intent: control_rules.Intent, snapshot: dict[str, Any], expected: tuple[bool, str]
) -> None:
    assert control_rules.compute_confirmation(intent, control_rules.build_observation(snapshot)) == expected


def test_confirmation_document() -> None:
    observed = control_rules.Observation("running", "iteration_start", None, True, False)
    result = control_rules.build_confirmation_result(
        "cancel",
        confirmed=False,
        reason="inactive_not_running",
        attempts=1,
        timeout_seconds=1,
        observation=observed,
        now=NOW,
    )
    assert result.confirmed is False
    assert result.exit_code == 1
    assert result.document == {
        "intent": "cancel",
        "confirmed": False,
        "reason": "timeout",
        "attempts": 1,
        "timeoutSeconds": 1,
        "observedStatus": "running",
        "observedLastEvent": "iteration_start",
        "observedApprovalStatus": None,
        "observedActive": True,
        "observedAt": "2026-02-22T10:00:30Z",
    }
    assert list(result.document) == list(result.document)  # key order is the reference's


# --- service response mapping (§8.4 step 5) ----------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            {
                "ok": True,
                "exitCode": 0,
                "result": {"status": "confirmed", "confirmed": True, "confirm": {"c": 1}},
            },
            ("confirmed", 0, True, "succeeded", "confirmed", True, False),
        ),
        (
            {
                "ok": False,
                "exitCode": 2,
                "result": {"status": "ambiguous", "confirm": {"c": 1}, "confirmExitCode": 1},
                "replayed": True,
            },
            ("ambiguous", 2, False, "succeeded", "ambiguous", True, True),
        ),
        (
            {"ok": False, "exitCode": 1, "result": {"status": "failed_command"}, "replayed": True},
            ("failed_command", 1, False, "failed_command", "not_attempted", False, True),
        ),
        (
            {"ok": True, "exitCode": 0, "result": {"status": "executed_unconfirmed"}},
            ("executed_unconfirmed", 0, False, "succeeded", "skipped", False, False),
        ),
        ({"ok": True}, ("confirmed", 0, True, "succeeded", "confirmed", False, False)),
        ({"ok": False, "exitCode": 2}, ("ambiguous", 2, False, "succeeded", "ambiguous", False, False)),
        (
            {"ok": False, "exitCode": 5},
            ("failed_command", 5, False, "failed_command", "not_attempted", False, False),
        ),
        ({"exitCode": -3}, ("failed_command", 0, False, "failed_command", "not_attempted", False, False)),
        (
            {"ok": True, "result": {"status": "executed", "confirm": {"x": 1}}},
            ("executed", 0, False, "succeeded", "attempted_unknown", True, False),
        ),
        (
            {"result": "not an object", "replayed": "yes"},
            ("failed_command", 0, False, "failed_command", "not_attempted", False, False),
        ),
    ],
)
def test_read_service_response(response: dict[str, Any], expected: tuple[Any, ...]) -> None:
    r = control_rules.read_service_response(response)
    got = (
        r.status,
        r.exit_code,
        r.confirmed,
        r.execution_status,
        r.confirmation_status,
        r.confirmation_attempted,
        r.replayed,
    )
    assert got == expected


def test_read_service_response_confirm_exit_code() -> None:
    reading = control_rules.read_service_response(
        {"result": {"status": "ambiguous", "confirmExitCode": 1, "confirm": {}}}
    )
    assert reading.confirm_exit_code == 1
    assert reading.confirm == {}


def test_service_control_body_is_pruned() -> None:
    body = control_rules.build_service_control_body(
        loop_id="demo",
        intent="cancel",
        by="alice",
        note="",
        trace_id="",
        idempotency_key="k",
        no_confirm=True,
    )
    assert body == {
        "loopId": "demo",
        "intent": "cancel",
        "by": "alice",
        "idempotencyKey": "k",
        "noConfirm": True,
    }
    full = control_rules.build_service_control_body(
        loop_id="demo",
        intent="reject",
        by="a",
        note="n",
        trace_id="t",
        idempotency_key="k",
        no_confirm=False,
        timeout_seconds=0,
        interval_seconds=2,
    )
    assert full["note"] == "n"
    assert full["traceId"] == "t"
    assert full["timeoutSeconds"] == 0
    assert full["intervalSeconds"] == 2


# --- exit and reason codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exit_code", "reason"),
    [
        ("confirmed", 0, None),
        ("executed_unconfirmed", 0, None),
        ("ambiguous", 2, "control_ambiguous"),
        ("failed_command", 1, "control_failed_command"),
        ("executed", 1, None),
        ("whatever", 1, None),
    ],
)
def test_exit_and_reason_codes(status: str, exit_code: int, reason: str | None) -> None:
    assert control_rules.compute_exit_code(status) == exit_code
    assert control_rules.compute_reason_code(status) == reason


def test_duration_is_clamped() -> None:
    assert control_rules.compute_duration_seconds(START, NOW) == 2
    assert control_rules.compute_duration_seconds(NOW, START) == 0


# --- journal rows ------------------------------------------------------------------------------


def _record(**overrides: Any) -> control_rules.ControlRecord:
    fields: dict[str, Any] = {
        "loop_id": "demo-loop",
        "intent": "reject",
        "transport": "local",
        "trace_id": "x2",
        "requested_by": "alice",
        "note": "nope",
        "idempotency_key": "reject-1771754404-1234",
        "started_at": START,
        "completed_at": NOW,
        "status": "failed_command",
        "execution_status": "failed_command",
        "exit_code": 7,
        "command": "/path/superloop.sh approve --repo /r --loop demo-loop --by alice --reject --note nope",
        "command_output": "boom",
        "replayed": False,
        "confirmation_status": "not_attempted",
        "confirmation_attempted": False,
        "confirm": None,
        "confirm_exit_code": 0,
        "confirmed": False,
        "do_confirm": True,
        "timeout_seconds": 1,
        "interval_seconds": 0,
        "retry_attempts": 3,
        "retry_backoff_seconds": 1,
    }
    fields.update(overrides)
    return control_rules.ControlRecord(**fields)


def test_intent_row_shape_and_order() -> None:
    row = control_rules.build_intent_row(_record())
    assert list(row) == [
        "timestamp",
        "loopId",
        "intent",
        "traceId",
        "requestedBy",
        "note",
        "transport",
        "status",
        "command",
        "idempotencyKey",
        "exitCode",
        "confirmExitCode",
        "confirmed",
        "commandOutput",
    ]
    assert row["timestamp"] == "2026-02-22T10:00:30Z"
    assert row["exitCode"] == 7


def test_intent_row_prunes_empty_note_output_and_confirm() -> None:
    row = control_rules.build_intent_row(_record(note="", command_output="", trace_id=""))
    assert "note" not in row
    assert "commandOutput" not in row
    assert "confirm" not in row
    assert "traceId" not in row


def test_control_row() -> None:
    row = control_rules.build_control_row(_record())
    assert row == {
        "timestamp": "2026-02-22T10:00:30Z",
        "startedAt": "2026-02-22T10:00:28Z",
        "loopId": "demo-loop",
        "intent": "reject",
        "traceId": "x2",
        "transport": "local",
        "status": "failed_command",
        "reasonCode": "control_failed_command",
        "idempotencyKey": "reject-1771754404-1234",
        "requestedBy": "alice",
        "exitCode": 7,
        "confirmExitCode": 0,
        "confirmed": False,
        "durationSeconds": 2,
        "retryAttempts": 3,
        "retryBackoffSeconds": 1,
    }


def test_invocation_row() -> None:
    confirm = {"intent": "cancel", "confirmed": False, "reason": "timeout"}
    record = _record(
        intent="cancel",
        note="",
        status="ambiguous",
        execution_status="succeeded",
        exit_code=0,
        confirmation_status="ambiguous",
        confirmation_attempted=True,
        confirm=confirm,
        confirm_exit_code=1,
        command_output="",
    )
    row = control_rules.build_invocation_row(record)
    assert row["schemaVersion"] == "v1"
    assert "note" not in row
    assert row["request"] == {
        "doConfirm": True,
        "timeoutSeconds": 1,
        "intervalSeconds": 0,
        "retryAttempts": 3,
        "retryBackoffSeconds": 1,
    }
    assert row["execution"] == {
        "status": "succeeded",
        "exitCode": 0,
        "command": record.command,
        "replayed": False,
    }
    assert row["confirmation"] == {
        "attempted": True,
        "status": "ambiguous",
        "exitCode": 1,
        "outcome": confirm,
    }
    assert row["outcome"] == {
        "status": "ambiguous",
        "confirmed": False,
        "reasonCode": "control_ambiguous",
        "durationSeconds": 2,
    }


def test_record_properties() -> None:
    record = _record(status="confirmed")
    assert record.exit_status == 0
    assert record.reason_code is None
    assert dataclasses.replace(record, status="ambiguous").exit_status == 2


# --- service endpoint parsing ------------------------------------------------------------------


def _parse(payload: object, key: str = "", trace: str = "") -> control_rules.ServiceControlRequest:
    return control_rules.parse_service_control_request(
        payload, header_idempotency_key=key, header_trace_id=trace, default_by="ops-service"
    )


def test_parse_trims_and_uses_header_fallbacks() -> None:
    parsed = _parse({"loopId": " demo ", "intent": " cancel ", "note": " hi "}, key=" hk ", trace=" ht ")
    assert parsed == control_rules.ServiceControlRequest(
        loop_id="demo",
        intent="cancel",
        by="ops-service",
        note="hi",
        idempotency_key="hk",
        trace_id="ht",
        no_confirm=False,
        timeout_seconds=None,
        interval_seconds=None,
    )


def test_parse_body_wins_over_headers() -> None:
    parsed = _parse(
        {"loopId": "d", "intent": "approve", "idempotencyKey": "bk", "traceId": "bt", "by": "zoe"},
        key="hk",
        trace="ht",
    )
    assert (parsed.idempotency_key, parsed.trace_id, parsed.by) == ("bk", "bt", "zoe")


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), ("false", True), (0, False), (None, False)]
)
def test_parse_no_confirm_truthiness(value: object, expected: bool) -> None:
    assert _parse({"loopId": "d", "intent": "cancel", "noConfirm": value}).no_confirm is expected


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        ([1], "invalid_request", "request body must be an object"),
        ({}, "invalid_request", "loopId is required"),
        ({"loopId": "d"}, "invalid_request", "intent must be cancel, approve, or reject"),
        (
            {"loopId": "d", "intent": "cancel", "intervalSeconds": "2"},
            "invalid_request",
            "intervalSeconds must be a non-negative integer",
        ),
    ],
)
def test_parse_rejections(payload: object, code: str, message: str) -> None:
    with pytest.raises(control_rules.ServiceRequestError) as caught:
        _parse(payload)
    assert (caught.value.code, caught.value.message) == (code, message)


def test_service_response_and_replay() -> None:
    result = {"status": "confirmed", "traceId": "inner"}
    response = control_rules.build_service_control_response(
        exit_code=0, result=result, stderr="", trace_id=""
    )
    assert response == {"ok": True, "exitCode": 0, "result": result, "replayed": False, "traceId": "inner"}
    failed = control_rules.build_service_control_response(
        exit_code=2, result=None, stderr="warn", trace_id="t"
    )
    assert failed == {"ok": False, "exitCode": 2, "stderr": "warn", "replayed": False, "traceId": "t"}
    replay = control_rules.build_service_replay_response(failed, trace_id="other")
    assert replay["replayed"] is True
    assert replay["traceId"] == "t"
    assert failed["replayed"] is False  # the stored copy is untouched
    no_trace = control_rules.build_service_replay_response({"ok": True}, trace_id="new")
    assert no_trace == {"ok": True, "replayed": True, "traceId": "new"}


@pytest.mark.parametrize(("exit_code", "status"), [(0, 200), (2, 409), (1, 500), (7, 500)])
def test_service_http_status(exit_code: int, status: int) -> None:
    assert control_rules.compute_service_http_status(exit_code) == status


@pytest.mark.parametrize(
    ("loop_id", "safe"),
    [
        ("demo-loop", True),
        ("a.b_c", True),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a\\b", False),
        ("a\x00b", False),
    ],
)
def test_safe_loop_ids(loop_id: str, safe: bool) -> None:
    assert control_rules.is_safe_loop_id(loop_id) is safe


# --- robustness on arbitrary JSON ----------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_response_keys = st.sampled_from(["ok", "exitCode", "result", "replayed", "traceId", "stderr"])
_result_keys = st.sampled_from(["status", "confirmed", "confirm", "confirmExitCode", "traceId"])


@hypothesis.given(
    st.dictionaries(_response_keys, _json, max_size=6),
    st.dictionaries(_result_keys, _json, max_size=5),
)
def test_read_service_response_stays_in_vocabulary(response: dict[str, Any], result: dict[str, Any]) -> None:
    if result:
        response = {**response, "result": result}
    reading = control_rules.read_service_response(response)
    assert reading.execution_status in ("succeeded", "failed_command")
    assert reading.confirmation_status in control_rules.CONFIRMATION_STATUSES
    assert isinstance(reading.status, str)
    assert reading.status
    assert reading.exit_code >= 0
    assert reading.confirm_exit_code >= 0
    assert (reading.status == "failed_command") == (reading.execution_status == "failed_command")


@hypothesis.given(_json, st.text(max_size=5), st.text(max_size=5))
def test_parse_service_request_fails_only_with_request_errors(payload: Any, key: str, trace: str) -> None:
    try:
        parsed = _parse(payload, key=key, trace=trace)
    except control_rules.ServiceRequestError as exc:
        code = exc.code
        parsed = None
    if parsed is None:
        assert code == "invalid_request"
        return
    assert parsed.intent in control_rules.INTENTS
    assert parsed.loop_id
    assert parsed.loop_id == parsed.loop_id.strip()
