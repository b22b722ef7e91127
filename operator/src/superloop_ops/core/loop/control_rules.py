"""Control intents as pure rules: validation, status vocabulary, confirmation, journal rows.

A control action (cancel / approve / reject a loop run) is executed by the shell
(``engine.loop.control_run``); everything that decides *what it means* lives here so the local
path, the sprite-service path and the service's own endpoint agree byte for byte:

* which runtime command an intent maps to (§8.2) and how its display string looks;
* whether fresh runtime evidence confirms an intent (§8.3), as a function of one snapshot;
* how a sprite-service response becomes status / execution / confirmation (§8.4);
* the exact ``intents.jsonl``, ``telemetry/control.jsonl`` and
  ``telemetry/control-invocations.jsonl`` rows (§8.6-§8.8) and the exit code (§8.9);
* the service's request parsing and response envelope for ``POST /ops/control`` (§9.3).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeGuard

from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact, format_ts, prune_nulls
from superloop_ops.core.loop.artifacts import jq_get as _get
from superloop_ops.errors import ContractError

__all__ = [
    "CONFIRMATION_STATUSES",
    "EXECUTION_STATUSES",
    "INTENTS",
    "OUTCOME_STATUSES",
    "TRANSPORTS",
    "ConfirmationResult",
    "ControlRecord",
    "Intent",
    "Observation",
    "ServiceControlRequest",
    "ServiceRequestError",
    "ServiceResponseReading",
    "build_confirmation_result",
    "build_control_row",
    "build_default_idempotency_key",
    "build_intent_row",
    "build_invocation_row",
    "build_observation",
    "build_request_fingerprint",
    "build_runtime_argv",
    "build_service_control_body",
    "build_service_control_response",
    "build_service_replay_response",
    "build_service_store_entry",
    "compute_confirmation",
    "compute_duration_seconds",
    "compute_exit_code",
    "compute_key_conflict",
    "compute_reason_code",
    "compute_service_http_status",
    "format_command",
    "is_safe_loop_id",
    "parse_service_control_request",
    "read_service_response",
    "tail_lines",
    "validate_intent",
]

Intent = Literal["cancel", "approve", "reject"]
INTENTS: Final[tuple[str, ...]] = ("cancel", "approve", "reject")
TRANSPORTS: Final[tuple[str, ...]] = ("local", "sprite_service")

OUTCOME_STATUSES: Final[tuple[str, ...]] = (
    "confirmed",
    "executed_unconfirmed",
    "ambiguous",
    "failed_command",
)
EXECUTION_STATUSES: Final[tuple[str, ...]] = ("succeeded", "failed_command", "interrupted")
CONFIRMATION_STATUSES: Final[tuple[str, ...]] = (
    "confirmed",
    "ambiguous",
    "skipped",
    "not_attempted",
    "attempted_unknown",
)

_STOP_OK: Final = frozenset({"confirmed", "executed_unconfirmed"})


def validate_intent(value: object) -> Intent:
    """Fail closed on anything but the three intents (the CLI's exact message)."""
    if value is None or value == "":
        raise ContractError("--intent is required")
    if value not in INTENTS:
        raise ContractError("intent must be one of: cancel, approve, reject")
    return value  # type: ignore[return-value]


def is_safe_loop_id(loop_id: str) -> bool:
    """A loop id names one directory under ``.superloop/loops``; it must not walk out of it."""
    if not loop_id or loop_id in (".", ".."):
        return False
    return not any(char in loop_id for char in ("/", "\\", "\x00"))


def build_default_idempotency_key(intent: str, epoch: int, pid: int, nonce: str = "") -> str:
    """``<intent>-<epoch>-<pid>`` as the reference CLI; ``nonce`` keeps in-process callers unique."""
    key = f"{intent}-{epoch}-{pid}"
    return f"{key}-{nonce}" if nonce else key


# --- §8.2 local path -------------------------------------------------------------------------


def build_runtime_argv(
    runtime: Sequence[str], intent: Intent, *, repo: str, loop_id: str, by: str, note: str
) -> list[str]:
    """The runtime CLI invocation for an intent (``runtime`` is the configured command prefix)."""
    argv = list(runtime)
    if intent == "cancel":
        return [*argv, "cancel", "--repo", repo]
    argv += ["approve", "--repo", repo, "--loop", loop_id, "--by", by]
    if intent == "reject":
        argv.append("--reject")
    if note:
        argv += ["--note", note]
    return argv


def format_command(argv: Sequence[str]) -> str:
    """A copy-pasteable display string (POSIX quoting; the reference used bash ``%q``)."""
    return shlex.join(argv)


def tail_lines(text: str, limit: int = 40, *, skip_blank: bool = False) -> str:
    """The last ``limit`` lines, CR stripped, trailing blank lines dropped (``$(tail ...)`` semantics).

    ``skip_blank`` drops every blank line first, as the service does for stderr excerpts.
    """
    lines = [line.rstrip("\r") for line in text.splitlines()]
    if skip_blank:
        lines = [line for line in lines if line.strip()]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines[-limit:])


# --- §8.3 confirmation -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one snapshot says about the runtime, as the confirmation poller sees it."""

    status: str = "unknown"
    last_event: str | None = None
    approval_status: str | None = None
    active: bool = False
    completion_ok: bool = False


def _text_or_none(value: object) -> str | None:
    # jq's `// ""` then "empty means null": null, false and "" all read as absent.
    if value is None or value is False or value == "":
        return None
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    return str(value)


def build_observation(snapshot: Mapping[str, Any]) -> Observation:
    """Read the five confirmation inputs from a ``loop_run_snapshot`` envelope."""
    return Observation(
        status=_text_or_none(_get(snapshot, "run", "status")) or "unknown",
        last_event=_text_or_none(_get(snapshot, "health", "lastEventName")),
        approval_status=_text_or_none(_get(snapshot, "runtime", "approval", "status")),
        active=_get(snapshot, "runtime", "superloopState", "active") is True,
        completion_ok=_get(snapshot, "run", "summary", "completion_ok") is True,
    )


def compute_confirmation(intent: Intent, observation: Observation) -> tuple[bool, str]:
    """``(confirmed, reason)``: does this evidence show the intent took effect?

    A reject is confirmed by any ``approval_decision`` event, an approval included: that is
    the reference's rule and it is kept (see docs/divergences.md).
    """
    if intent == "cancel":
        if not observation.active and observation.status != "running":
            return True, "inactive_not_running"
    elif intent == "approve":
        if (
            observation.completion_ok
            or observation.status == "complete"
            or observation.last_event == "loop_complete"
        ):
            return True, "completion_observed"
    elif observation.approval_status == "rejected" or observation.last_event in (
        "approval_rejected",
        "approval_decision",
    ):
        return True, "rejection_observed"
    return False, "timeout"


@dataclasses.dataclass(frozen=True)
class ConfirmationResult:
    """The poller's verdict; ``document`` is the JSON the reference prints (§8.3)."""

    confirmed: bool
    exit_code: int
    document: JsonObject


def build_confirmation_result(
    intent: Intent,
    *,
    confirmed: bool,
    reason: str,
    attempts: int,
    timeout_seconds: int,
    observation: Observation,
    now: dt.datetime,
) -> ConfirmationResult:
    document: JsonObject = {
        "intent": intent,
        "confirmed": confirmed,
        "reason": reason if confirmed else "timeout",
        "attempts": attempts,
        "timeoutSeconds": timeout_seconds,
        "observedStatus": observation.status,
        "observedLastEvent": observation.last_event,
        "observedApprovalStatus": observation.approval_status,
        "observedActive": observation.active,
        "observedAt": format_ts(now),
    }
    return ConfirmationResult(confirmed=confirmed, exit_code=0 if confirmed else 1, document=document)


# --- §8.4 sprite_service path ----------------------------------------------------------------


def build_service_control_body(
    *,
    loop_id: str,
    intent: Intent,
    by: str,
    note: str,
    trace_id: str,
    idempotency_key: str,
    no_confirm: bool,
    timeout_seconds: int | None = None,
    interval_seconds: int | None = None,
) -> JsonObject:
    """The POST body; timeout/interval are our extension (the service forwards them)."""
    return prune_nulls(
        {
            "loopId": loop_id,
            "intent": intent,
            "by": by,
            "note": note or None,
            "traceId": trace_id or None,
            "idempotencyKey": idempotency_key,
            "noConfirm": no_confirm,
            "timeoutSeconds": timeout_seconds,
            "intervalSeconds": interval_seconds,
        }
    )


@dataclasses.dataclass(frozen=True)
class ServiceResponseReading:
    """A 2xx ``/ops/control`` response, read the way the reference CLI reads it."""

    status: str
    exit_code: int
    confirmed: bool
    confirm: Any
    confirm_exit_code: int
    replayed: bool
    execution_status: str
    confirmation_status: str
    confirmation_attempted: bool


def _is_nonneg_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_service_response(response: Mapping[str, Any]) -> ServiceResponseReading:
    """Map the service's response (``ok``, ``exitCode``, ``result``, ``replayed``) to our vocabulary."""
    result = response.get("result")
    result = result if isinstance(result, Mapping) else {}
    raw_exit = response.get("exitCode")
    exit_code = raw_exit if _is_nonneg_int(raw_exit) else 0
    result_status = _text_or_none(result.get("status"))
    if result_status:
        status = result_status
    elif response.get("ok") is True:
        status = "confirmed"
    elif exit_code == 2:
        status = "ambiguous"
    else:
        status = "failed_command"
    confirm = result.get("confirm")
    attempted = confirm is not None and confirm is not False
    raw_confirm_exit = result.get("confirmExitCode")
    confirm_exit_code = raw_confirm_exit if _is_nonneg_int(raw_confirm_exit) else 0
    confirmed = result.get("confirmed") is True or status == "confirmed"
    execution_status = "failed_command" if status == "failed_command" else "succeeded"
    if status == "confirmed":
        confirmation_status = "confirmed"
    elif status == "ambiguous":
        confirmation_status = "ambiguous"
    elif status == "executed_unconfirmed":
        confirmation_status = "skipped"
    else:
        confirmation_status = "attempted_unknown" if attempted else "not_attempted"
    return ServiceResponseReading(
        status=status,
        exit_code=exit_code,
        confirmed=confirmed,
        confirm=confirm if attempted else None,
        confirm_exit_code=confirm_exit_code,
        replayed=response.get("replayed") is True,
        execution_status=execution_status,
        confirmation_status=confirmation_status,
        confirmation_attempted=attempted,
    )


# --- §8.5-§8.9 records -----------------------------------------------------------------------


def compute_reason_code(status: str) -> str | None:
    if status == "ambiguous":
        return "control_ambiguous"
    if status == "failed_command":
        return "control_failed_command"
    return None


def compute_exit_code(status: str) -> int:
    """§8.9: success statuses 0, ambiguous 2, anything else 1."""
    if status in _STOP_OK:
        return 0
    if status == "ambiguous":
        return 2
    return 1


def compute_duration_seconds(started_at: dt.datetime, completed_at: dt.datetime) -> int:
    return max(0, int(completed_at.timestamp()) - int(started_at.timestamp()))


@dataclasses.dataclass(frozen=True)
class ControlRecord:
    """Everything one control invocation produced; the three journal rows are views of it."""

    loop_id: str
    intent: Intent
    transport: str
    trace_id: str
    requested_by: str
    note: str
    idempotency_key: str
    started_at: dt.datetime
    completed_at: dt.datetime
    status: str
    execution_status: str
    exit_code: int
    command: str
    command_output: str
    replayed: bool
    confirmation_status: str
    confirmation_attempted: bool
    confirm: Any
    confirm_exit_code: int
    confirmed: bool
    do_confirm: bool
    timeout_seconds: int
    interval_seconds: int
    retry_attempts: int
    retry_backoff_seconds: int

    @property
    def reason_code(self) -> str | None:
        return compute_reason_code(self.status)

    @property
    def duration_seconds(self) -> int:
        return compute_duration_seconds(self.started_at, self.completed_at)

    @property
    def exit_status(self) -> int:
        return compute_exit_code(self.status)


def build_intent_row(record: ControlRecord) -> JsonObject:
    """§8.6: the ``intents.jsonl`` row, also the CLI's stdout and the service's ``result``."""
    return prune_nulls(
        {
            "timestamp": format_ts(record.completed_at),
            "loopId": record.loop_id,
            "intent": record.intent,
            "traceId": record.trace_id or None,
            "requestedBy": record.requested_by,
            "note": record.note or None,
            "transport": record.transport,
            "status": record.status,
            "command": record.command,
            "idempotencyKey": record.idempotency_key or None,
            "exitCode": record.exit_code,
            "confirmExitCode": record.confirm_exit_code,
            "confirmed": record.confirmed,
            "commandOutput": record.command_output or None,
            "confirm": record.confirm,
        }
    )


def build_control_row(record: ControlRecord) -> JsonObject:
    """§8.7: the ``telemetry/control.jsonl`` row."""
    return prune_nulls(
        {
            "timestamp": format_ts(record.completed_at),
            "startedAt": format_ts(record.started_at),
            "loopId": record.loop_id,
            "intent": record.intent,
            "traceId": record.trace_id or None,
            "transport": record.transport,
            "status": record.status,
            "reasonCode": record.reason_code,
            "idempotencyKey": record.idempotency_key or None,
            "requestedBy": record.requested_by,
            "exitCode": record.exit_code,
            "confirmExitCode": record.confirm_exit_code,
            "confirmed": record.confirmed,
            "durationSeconds": record.duration_seconds,
            "retryAttempts": record.retry_attempts,
            "retryBackoffSeconds": record.retry_backoff_seconds,
        }
    )


def build_invocation_row(record: ControlRecord) -> JsonObject:
    """§8.8: the ``telemetry/control-invocations.jsonl`` audit row."""
    return prune_nulls(
        {
            "schemaVersion": "v1",
            "timestamp": format_ts(record.completed_at),
            "startedAt": format_ts(record.started_at),
            "loopId": record.loop_id,
            "intent": record.intent,
            "traceId": record.trace_id or None,
            "transport": record.transport,
            "requestedBy": record.requested_by,
            "note": record.note or None,
            "idempotencyKey": record.idempotency_key or None,
            "request": {
                "doConfirm": record.do_confirm,
                "timeoutSeconds": record.timeout_seconds,
                "intervalSeconds": record.interval_seconds,
                "retryAttempts": record.retry_attempts,
                "retryBackoffSeconds": record.retry_backoff_seconds,
            },
            "execution": prune_nulls(
                {
                    "status": record.execution_status,
                    "exitCode": record.exit_code,
                    "command": record.command,
                    "output": record.command_output or None,
                    "replayed": record.replayed,
                }
            ),
            "confirmation": prune_nulls(
                {
                    "attempted": record.confirmation_attempted,
                    "status": record.confirmation_status,
                    "exitCode": record.confirm_exit_code,
                    "outcome": record.confirm,
                }
            ),
            "outcome": prune_nulls(
                {
                    "status": record.status,
                    "confirmed": record.confirmed,
                    "reasonCode": record.reason_code,
                    "durationSeconds": record.duration_seconds,
                }
            ),
        }
    )


# --- §9.3 service endpoint -------------------------------------------------------------------


class ServiceRequestError(ValueError):
    """A ``POST /ops/control`` body the service refuses (HTTP 400 with ``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class ServiceControlRequest:
    loop_id: str
    intent: Intent
    by: str
    note: str
    idempotency_key: str
    trace_id: str
    no_confirm: bool
    timeout_seconds: int | None
    interval_seconds: int | None


def _text(value: object) -> str:
    # Python truthiness, as the reference service: None, "", 0 and False all become "".
    return str(value).strip() if value else ""


def _optional_seconds(payload: Mapping[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if not _is_nonneg_int(value):
        raise ServiceRequestError("invalid_request", f"{key} must be a non-negative integer")
    return int(value)


def parse_service_control_request(
    payload: object, *, header_idempotency_key: str, header_trace_id: str, default_by: str
) -> ServiceControlRequest:
    """Validate a control request body; headers are fallbacks for the key and the trace."""
    if not isinstance(payload, Mapping):
        raise ServiceRequestError("invalid_request", "request body must be an object")
    loop_id = _text(payload.get("loopId"))
    intent = _text(payload.get("intent"))
    if not loop_id:
        raise ServiceRequestError("invalid_request", "loopId is required")
    if intent not in INTENTS:
        raise ServiceRequestError("invalid_request", "intent must be cancel, approve, or reject")
    return ServiceControlRequest(
        loop_id=loop_id,
        intent=intent,  # type: ignore[arg-type]
        by=_text(payload.get("by")) or default_by,
        note=_text(payload.get("note")),
        idempotency_key=_text(payload.get("idempotencyKey")) or header_idempotency_key.strip(),
        trace_id=_text(payload.get("traceId")) or header_trace_id.strip(),
        no_confirm=bool(payload.get("noConfirm", False)),
        timeout_seconds=_optional_seconds(payload, "timeoutSeconds"),
        interval_seconds=_optional_seconds(payload, "intervalSeconds"),
    )


def build_service_control_response(
    *, exit_code: int, result: JsonObject | None, stderr: str, trace_id: str
) -> JsonObject:
    """The ``/ops/control`` body: same for 200 / 409 / 500, top-level nulls dropped."""
    result_trace = result.get("traceId") if isinstance(result, Mapping) else None
    return prune_nulls(
        {
            "ok": exit_code == 0,
            "exitCode": exit_code,
            "result": result,
            "stderr": stderr or None,
            "replayed": False,
            "traceId": trace_id or result_trace,
        }
    )


FINGERPRINT_FIELD: Final = "requestFingerprint"


def build_request_fingerprint(*, loop_id: str, intent: str, by: str, note: str) -> str:
    """What an idempotency key is bound to: the request's loop, intent, requester and note.

    The trace id and the confirmation window are left out: a retry may carry a new trace or
    wait longer and is still the same request.
    """
    canonical = dumps_compact({"by": by, "intent": intent, "loopId": loop_id, "note": note})
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def compute_key_conflict(key: str, recorded: Mapping[str, Any] | None, fingerprint: str) -> str | None:
    """Why ``key`` may not be answered from ``recorded`` (None: same request, or recorded
    before requests were fingerprinted)."""
    stored = (recorded or {}).get(FINGERPRINT_FIELD)
    if not stored or stored == fingerprint:
        return None
    return (
        f"idempotency key {key!r} was already used for a different request "
        "(loop, intent, by or note differ); use a new key for a new request"
    )


def build_service_store_entry(response: Mapping[str, Any], *, fingerprint: str) -> JsonObject:
    """The stored copy of a response: the response plus the fingerprint its key is bound to."""
    return {**response, FINGERPRINT_FIELD: fingerprint}


def build_service_replay_response(stored: Mapping[str, Any], *, trace_id: str) -> JsonObject:
    """A stored response served again: ``replayed`` true, the trace added if absent."""
    replay = {name: value for name, value in stored.items() if name != FINGERPRINT_FIELD}
    replay["replayed"] = True
    if trace_id and "traceId" not in replay:
        replay["traceId"] = trace_id
    return replay


def compute_service_http_status(exit_code: int) -> int:
    if exit_code == 0:
        return 200
    if exit_code == 2:
        return 409
    return 500
