"""Fleet handoff: map policy candidates to explicit control intents, and record their execution.

A plan turns every unsuppressed candidate into a ``pending_operator_confirmation`` intent with
a stable idempotency key. Execution is either manual (a person confirmed; every pending
intent is a target) or autonomous (only policy-eligible intents). Autonomy is never recomputed
here: eligibility is carried from the policy state, and can only be taken away:

* by the retry guard: once an intent's execution was ambiguous or failed, autonomous retries of
  it stay blocked **until a person executes it successfully** (the reference forgot the guard
  after one run, so every other autonomous run could retry the same broken action);
* by an expired governance review (guarded_auto policies past ``reviewBy``).

Guards are kept in the handoff state under ``retryGuards`` so they survive runs in which the
intent is not planned at all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.fleet.policy_rules import GOVERNANCE_EXPIRED_REASON
from superloop_ops.core.fleet.rollup import sorted_unique

__all__ = [
    "PENDING",
    "RETRY_GUARD_PREFIX",
    "ControlOutcome",
    "ExecutionRequest",
    "UnmatchedFilterError",
    "build_execute_telemetry_row",
    "build_executed_state",
    "build_execution_result",
    "build_handoff_plan",
    "build_plan_telemetry_row",
    "compute_attempt",
    "compute_attempt_key",
    "compute_control_exit_code",
    "compute_idempotency_key",
    "compute_precheck_failure",
    "compute_retry_guards",
    "select_execution_targets",
    "slugify",
]

PENDING = "pending_operator_confirmation"
RETRY_GUARD_PREFIX = "autonomous_retry_guard_"
_GUARD_BY_STATUS = {
    "execution_ambiguous": "autonomous_retry_guard_ambiguous",
    "execution_failed": "autonomous_retry_guard_failed",
}
_KNOWN_CATEGORIES = ("reconcile_failed", "health_critical", "health_degraded")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9._-]")
_DASHES = re.compile(r"-+")
_INTENT_STATUS = {"executed": "executed", "ambiguous": "execution_ambiguous"}


class UnmatchedFilterError(ValueError):
    """A ``--loop`` / ``--intent-id`` filter matched nothing executable (fail closed)."""


@dataclasses.dataclass(frozen=True)
class ControlOutcome:
    """What one control call returned: its exit code (0 confirmed, 2 ambiguous, else failed) and document."""

    exit_code: int
    document: Any = None


@dataclasses.dataclass(frozen=True)
class ExecutionRequest:
    """Who asked for an execution, how, and when it started."""

    mode: str  # "manual" | "autonomous"
    requested_by: str
    requested_at: dt.datetime
    note: str | None = None


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def slugify(value: str) -> str:
    """Lowercase, unsafe characters to ``-``, runs of ``-`` collapsed, one leading/trailing ``-`` stripped."""
    slug = _DASHES.sub("-", _SLUG_UNSAFE.sub("-", value.lower()))
    slug = slug.removeprefix("-")
    return slug.removesuffix("-")


def compute_idempotency_key(prefix: str, trace_id: str, loop_id: str, category: str, intent: str) -> str:
    """Stable key for one intent of one handoff trace; the control path dedupes on it."""
    parts = (slugify(part) for part in (prefix, trace_id, loop_id, category, intent))
    return "-".join(part for part in parts if part)


def compute_attempt(guard: Mapping[str, Any] | None) -> int:
    """1 for a first execution; after a failed or ambiguous one (a retry guard), the next attempt.

    The control path dedupes on the idempotency key: a retry under the first key would only
    replay the recorded outcome. A retry is a new attempt with its own key, as on the operator path.
    """
    if guard is None:
        return 1
    previous = guard.get("attempt")
    return (previous if isinstance(previous, int) and previous >= 1 else 1) + 1


def compute_attempt_key(key: str, attempt: int) -> str:
    """The idempotency key of one attempt: the intent's key first, ``<key>-attempt<n>`` after."""
    return key if attempt <= 1 else f"{key}-attempt{attempt}"


def compute_control_exit_code(status: str | None) -> int:
    """Exit code of a control outcome in the loop-level status vocabulary."""
    if status in ("confirmed", "executed_unconfirmed"):
        return 0
    if status == "ambiguous":
        return 2
    return 1


def compute_retry_guards(prior_state: Mapping[str, Any] | None) -> dict[str, JsonObject]:
    """intentId -> guard record, from the prior handoff state (its ``retryGuards`` and its intents)."""
    guards: dict[str, JsonObject] = {}
    if not isinstance(prior_state, Mapping):
        return guards
    stored = prior_state.get("retryGuards")
    if isinstance(stored, Mapping):
        for intent_id, guard in stored.items():
            if isinstance(guard, Mapping) and str(guard.get("reason", "")).startswith(RETRY_GUARD_PREFIX):
                guards[str(intent_id)] = dict(guard)
    intents = prior_state.get("intents")
    for intent in intents if isinstance(intents, list) else []:
        if not isinstance(intent, Mapping) or not isinstance(intent.get("intentId"), str):
            continue
        reason = _GUARD_BY_STATUS.get(str(intent.get("status")))
        if reason is None:
            continue
        execution = _obj(intent.get("execution"))
        guards[intent["intentId"]] = {
            "reason": reason,
            "since": execution.get("executedAt") or prior_state.get("updatedAt"),
            "mode": execution.get("mode"),
            "traceId": execution.get("traceId") or prior_state.get("traceId"),
        }
    return guards


def _loop_index(registry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    loops = registry.get("loops")
    return {
        str(loop.get("loopId")): loop
        for loop in (loops if isinstance(loops, list) else [])
        if isinstance(loop, Mapping)
    }


def _build_intent(
    candidate: Mapping[str, Any],
    loop: Mapping[str, Any],
    *,
    trace_id: str,
    policy_trace_id: str,
    prefix: str,
    guard: Mapping[str, Any] | None,
    governance_expired: bool,
) -> JsonObject | None:
    category = candidate.get("category")
    intent = candidate.get("recommendedIntent")
    if intent is None and category in _KNOWN_CATEGORIES:
        intent = "cancel"
    if not isinstance(intent, str) or not intent:
        return None
    loop_id = str(candidate.get("loopId"))
    candidate_id = candidate.get("candidateId") or f"{loop_id}:{category or 'unknown'}"
    autonomous = _obj(candidate.get("autonomous"))
    eligible = autonomous.get("eligible") is True
    manual_only = autonomous.get("manualOnly") is True or not eligible
    reasons = list(autonomous.get("reasons") or [])
    if guard is not None:
        eligible, manual_only = False, True
        reasons.append(str(guard["reason"]))
    if governance_expired and eligible:
        eligible, manual_only = False, True
        reasons.append(GOVERNANCE_EXPIRED_REASON)
    service = _obj(loop.get("service"))
    record: JsonObject = {
        "intentId": f"{candidate_id}:{intent}",
        "candidateId": candidate_id,
        "loopId": loop_id,
        "category": category,
        "severity": candidate.get("severity"),
        "confidence": candidate.get("confidence"),
        "rationale": candidate.get("rationale"),
        "signal": candidate.get("signal"),
        "intent": intent,
        "recommendedIntent": candidate.get("recommendedIntent"),
        "status": PENDING,
        "requiresOperatorConfirmation": True,
        "fleetTraceId": trace_id,
        "policyTraceId": policy_trace_id,
        "candidateTraceId": candidate.get("traceId"),
        "autonomous": {"eligible": eligible, "manualOnly": manual_only, "reasons": sorted_unique(reasons)},
        "idempotencyKey": compute_idempotency_key(
            prefix, trace_id, loop_id, str(category or "unknown"), intent
        ),
        "transport": loop.get("transport") or "local",
        "service": {
            key: value
            for key, value in {
                "baseUrl": service.get("baseUrl"),
                "tokenEnv": service.get("tokenEnv"),
                "retryAttempts": service.get("retryAttempts", 3),
                "retryBackoffSeconds": service.get("retryBackoffSeconds", 1),
            }.items()
            if value is not None
        },
        "metadata": loop.get("metadata") or {},
    }
    return {key: value for key, value in record.items() if value is not None}


def _summary(intents: Sequence[Mapping[str, Any]], candidate_count: int, unsuppressed: int) -> JsonObject:
    def with_status(status: str) -> int:
        return sum(1 for intent in intents if intent.get("status") == status)

    return {
        "candidateCount": candidate_count,
        "unsuppressedCandidateCount": unsuppressed,
        "intentCount": len(intents),
        "autoEligibleIntentCount": sum(1 for i in intents if i["autonomous"]["eligible"]),
        "manualOnlyIntentCount": sum(1 for i in intents if i["autonomous"]["manualOnly"]),
        "pendingConfirmationCount": with_status(PENDING),
        "executedCount": with_status("executed"),
        "ambiguousCount": with_status("execution_ambiguous"),
        "failedCount": with_status("execution_failed"),
    }


def _plan_reason_codes(intents: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> list[str]:
    reasons = ["fleet_handoff_action_required" if summary["intentCount"] > 0 else "fleet_handoff_no_action"]
    if summary["pendingConfirmationCount"] > 0:
        reasons.append("fleet_handoff_confirmation_pending")
    if summary["intentCount"] < summary["unsuppressedCandidateCount"]:
        reasons.append("fleet_handoff_partial_mapping")
    if summary["unsuppressedCandidateCount"] > 0 and summary["intentCount"] == 0:
        reasons.append("fleet_handoff_unmapped_candidates")
    if any(r.startswith(RETRY_GUARD_PREFIX) for i in intents for r in i["autonomous"]["reasons"]):
        reasons.append("fleet_handoff_retry_guarded")
    if summary["autoEligibleIntentCount"] > 0:
        reasons.append("fleet_handoff_auto_eligible_intents")
    if summary["executedCount"] > 0:
        reasons.append("fleet_handoff_executed")
    if summary["ambiguousCount"] > 0:
        reasons.append("fleet_handoff_execution_ambiguous")
    if summary["failedCount"] > 0:
        reasons.append("fleet_handoff_execution_failed")
    return sorted_unique(reasons)


def build_handoff_plan(
    *,
    policy_state: Mapping[str, Any],
    registry: Mapping[str, Any],
    prior_state: Mapping[str, Any] | None,
    trace_id: str,
    prefix: str,
    registry_file: str,
    policy_state_file: str,
    governance_expired: bool,
    now: dt.datetime,
) -> JsonObject:
    """The handoff plan: every intent pending a person's confirmation (or an eligible autonomous run)."""
    policy_trace_id = policy_state.get("traceId") or trace_id
    loops = _loop_index(registry)
    guards = compute_retry_guards(prior_state)
    candidates = policy_state.get("candidates")
    candidates = [c for c in (candidates if isinstance(candidates, list) else []) if isinstance(c, Mapping)]
    unsuppressed = [c for c in candidates if c.get("suppressed") is not True]
    intents: list[JsonObject] = []
    for candidate in unsuppressed:
        loop = loops.get(str(candidate.get("loopId")), {})
        candidate_id = (
            candidate.get("candidateId") or f"{candidate.get('loopId')}:{candidate.get('category')}"
        )
        intent_name = candidate.get("recommendedIntent") or "cancel"
        built = _build_intent(
            candidate,
            loop,
            trace_id=trace_id,
            policy_trace_id=policy_trace_id,
            prefix=prefix,
            guard=guards.get(f"{candidate_id}:{intent_name}"),
            governance_expired=governance_expired,
        )
        if built is not None:
            intents.append(built)
    intents.sort(key=lambda i: (str(i["loopId"]), str(i.get("category")), str(i["intent"])))
    summary = _summary(intents, len(candidates), len(unsuppressed))
    stamp = format_ts(now)
    return {
        "schemaVersion": "v1",
        "generatedAt": stamp,
        "updatedAt": stamp,
        "fleetId": policy_state.get("fleetId") or registry.get("fleetId") or "default",
        "traceId": trace_id,
        "policyTraceId": policy_trace_id,
        "mode": policy_state.get("mode") or "advisory",
        "source": {"registryFile": registry_file, "policyStateFile": policy_state_file},
        "control": {"idempotencyPrefix": prefix, "requiresOperatorConfirmation": True},
        "intents": intents,
        "summary": summary,
        "reasonCodes": _plan_reason_codes(intents, summary),
        # Only present while some intent is guarded (keeps the reference shape otherwise).
        **({"retryGuards": guards} if guards else {}),
    }


def build_plan_telemetry_row(plan: Mapping[str, Any]) -> JsonObject:
    """The ``fleet_handoff_plan`` row, appended before any execution."""
    return {
        "timestamp": plan["generatedAt"],
        "category": "fleet_handoff_plan",
        "fleetId": plan["fleetId"],
        "traceId": plan["traceId"],
        "mode": plan["mode"],
        "summary": {
            "summary": plan["summary"],
            "reasonCodes": plan["reasonCodes"],
            "policyTraceId": plan["policyTraceId"],
        },
    }


def select_execution_targets(
    plan: Mapping[str, Any], *, mode: str, loops: Sequence[str] = (), intent_ids: Sequence[str] = ()
) -> list[JsonObject]:
    """Intents to execute, in plan order; a filter value that matches nothing fails closed."""
    pool = [
        intent
        for intent in plan["intents"]
        if intent.get("status") == PENDING and (mode != "autonomous" or intent["autonomous"]["eligible"])
    ]
    if loops:
        missing = [loop for loop in loops if not any(i["loopId"] == loop for i in pool)]
        if missing:
            raise UnmatchedFilterError(
                f"loop filter not found in {mode} execution intents: {','.join(missing)}"
            )
        pool = [intent for intent in pool if intent["loopId"] in loops]
    if intent_ids:
        missing = [iid for iid in intent_ids if not any(i["intentId"] == iid for i in pool)]
        if missing:
            raise UnmatchedFilterError(
                f"intent filter not found in {mode} execution intents: {','.join(missing)}"
            )
        pool = [intent for intent in pool if intent["intentId"] in intent_ids]
    return pool


def compute_precheck_failure(intent: Mapping[str, Any], mode: str) -> str | None:
    """A reason to record a failure without calling control (defensive; unreachable after validation)."""
    if mode == "autonomous" and not intent["autonomous"]["eligible"]:
        return "autonomous_intent_not_eligible"
    service = intent.get("service") or {}
    if intent.get("transport") == "sprite_service" and not service.get("baseUrl"):
        return "missing_service_base_url"
    return None


def build_execution_result(
    intent: Mapping[str, Any],
    *,
    request: ExecutionRequest,
    trace_id: str,
    idempotency_key: str,
    executed_at: dt.datetime,
    outcome: ControlOutcome | None,
    precheck_reason: str | None = None,
    attempt: int = 1,
) -> JsonObject:
    """One ``execution.results`` row (``attempt`` only on a retry)."""
    if precheck_reason is not None or outcome is None:
        status, reason, exit_code, control = "failed", precheck_reason or "control_failed_command", 1, None
    elif outcome.exit_code == 0:
        status, reason, exit_code, control = "executed", "control_confirmed", 0, outcome.document
    elif outcome.exit_code == 2:
        status, reason, exit_code, control = "ambiguous", "control_ambiguous", 2, outcome.document
    else:
        status, reason, exit_code, control = (
            "failed",
            "control_failed_command",
            outcome.exit_code,
            outcome.document,
        )
    row: JsonObject = {
        "intentId": intent["intentId"],
        "loopId": intent["loopId"],
        "intent": intent["intent"],
        "traceId": trace_id,
        "idempotencyKey": idempotency_key,
        "requestedBy": request.requested_by,
        "executedAt": format_ts(executed_at),
        "status": status,
        "reasonCode": reason,
        "executionMode": request.mode,
        "autonomousEligible": intent["autonomous"]["eligible"] is True,
        "controlExitCode": exit_code,
        "control": control,
        "attempt": attempt if attempt > 1 else None,
    }
    return {key: value for key, value in row.items() if value is not None}


def _intent_execution(result: Mapping[str, Any]) -> JsonObject:
    control = _obj(result.get("control"))
    confirmed = control.get("confirmed")
    record: JsonObject = {
        "mode": result["executionMode"],
        "executedAt": result["executedAt"],
        "requestedBy": result["requestedBy"],
        "status": result["status"],
        "reasonCode": result["reasonCode"],
        "traceId": result["traceId"],
        "idempotencyKey": result["idempotencyKey"],
        "autonomousEligible": result["autonomousEligible"],
        "controlExitCode": result["controlExitCode"],
        "controlStatus": control.get("status"),
        "confirmed": confirmed if isinstance(confirmed, bool) else None,
    }
    return {key: value for key, value in record.items() if value is not None}


def build_executed_state(
    plan: Mapping[str, Any],
    results: Sequence[JsonObject],
    *,
    request: ExecutionRequest,
    requested_count: int,
    completed_at: dt.datetime,
) -> JsonObject:
    """The handoff state after execution: intent statuses, execution block, guards, reason codes."""
    by_intent = {result["intentId"]: result for result in results}
    intents: list[JsonObject] = []
    for intent in plan["intents"]:
        result = by_intent.get(intent["intentId"])
        if result is None:
            intents.append(dict(intent))
            continue
        status = _INTENT_STATUS.get(result["status"], "execution_failed")
        intents.append({**intent, "status": status, "execution": _intent_execution(result)})
    guards = {key: dict(value) for key, value in plan.get("retryGuards", {}).items()}
    for result in results:
        if result["status"] == "executed":
            if request.mode == "manual":
                # A person confirmed and it worked: the guard has done its job.
                guards.pop(result["intentId"], None)
        else:
            kind = "ambiguous" if result["status"] == "ambiguous" else "failed"
            guards[result["intentId"]] = {
                "reason": f"{RETRY_GUARD_PREFIX}{kind}",
                "since": result["executedAt"],
                "mode": request.mode,
                "traceId": result["traceId"],
                "attempt": result.get("attempt", 1),
            }
    summary = _summary(
        intents, plan["summary"]["candidateCount"], plan["summary"]["unsuppressedCandidateCount"]
    )
    counts = {
        status: sum(1 for r in results if r["status"] == status)
        for status in ("executed", "ambiguous", "failed")
    }
    state: JsonObject = {
        **{key: value for key, value in plan.items() if key != "retryGuards"},
        "updatedAt": format_ts(completed_at),
        "intents": intents,
        "summary": summary,
        "reasonCodes": _plan_reason_codes(intents, summary),
        **({"retryGuards": guards} if guards else {}),
        "execution": {
            "mode": request.mode,
            "requestedBy": request.requested_by,
            "requestedAt": format_ts(request.requested_at),
            "completedAt": format_ts(completed_at),
            "note": request.note,
            "requestedIntentCount": requested_count,
            "executedIntentCount": len(results),
            "executedCount": counts["executed"],
            "ambiguousCount": counts["ambiguous"],
            "failedCount": counts["failed"],
            "results": list(results),
        },
    }
    return state


def build_execute_telemetry_row(state: Mapping[str, Any]) -> JsonObject:
    """The ``fleet_handoff_execute`` row: the auto-pause input when its mode is autonomous."""
    return {
        "timestamp": state["execution"]["completedAt"],
        "category": "fleet_handoff_execute",
        "fleetId": state["fleetId"],
        "traceId": state["traceId"],
        "execution": state["execution"],
        "summary": {"summary": state["summary"], "reasonCodes": state["reasonCodes"]},
    }
