"""HandoffIntent state machine (manual path): approval gate, crash rule, outcome vocabulary.

Phases: ``pending_operator_confirmation`` -> ``executing`` -> one outcome of
``executed`` / ``executed_unconfirmed`` / ``execution_ambiguous`` / ``execution_failed``.

Rules this module owns (pure; the handler only applies what ``decide_intent`` says):

- Nothing executes without the approval annotation ``ops.superloop.dev/approved: "true"``
  together with a non-empty ``ops.superloop.dev/approved-by`` (the chart's admission policy
  makes that the requesting user). An incomplete approval is reported, never acted on.
- Each approval is consumed once. Its fingerprint (approver, ``approved-at`` stamp, note) is
  stored in status when execution starts; the same annotations can never start a second run.
- Crash rule: an intent found ``executing`` without an outcome was interrupted between
  recording ``executing`` and recording the outcome, so the side effect may or may not have
  happened. Unless the journal holds the outcome of that exact idempotency key, the intent
  becomes ``execution_ambiguous``, and like ``execution_failed`` it runs again only after a *new*
  approval (a different fingerprint), with a new idempotency key.
- ``executed`` and ``executed_unconfirmed`` are final: a later approval does nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.common.status_conditions import (
    ConditionSpec,
    build_conditions,
    find_condition,
    summarize_reasons,
)
from superloop_ops.core.fleet.owned_names import (
    API_VERSION,
    FLEET_LABEL,
    INTENT_ID_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGER,
    build_owner_reference,
    compute_dns_name,
    compute_intent_name,
)
from superloop_ops.models import conditions as model_conditions
from superloop_ops.models import handoff_intent as model_intent

__all__ = [
    "ANNOTATION_APPROVED",
    "ANNOTATION_APPROVED_AT",
    "ANNOTATION_APPROVED_BY",
    "ANNOTATION_NOTE",
    "COND_APPROVED",
    "COND_EXECUTED",
    "EXECUTED",
    "EXECUTED_UNCONFIRMED",
    "EXECUTING",
    "EXECUTION_AMBIGUOUS",
    "EXECUTION_FAILED",
    "FINAL_OUTCOMES",
    "INTENTS",
    "OUTCOMES",
    "PENDING",
    "RETRYABLE_OUTCOMES",
    "Approval",
    "ApprovalParse",
    "Await",
    "Decision",
    "Execute",
    "Finished",
    "IntentEvent",
    "Recover",
    "build_autonomous_executing_status",
    "build_autonomous_outcome_status",
    "build_executing_status",
    "build_idempotency_key",
    "build_intent_manifest",
    "build_manual_handover_status",
    "build_outcome_status",
    "build_pending_status",
    "compute_intent_events",
    "compute_outcome_from_control",
    "decide_intent",
    "parse_approval",
]

PENDING = "pending_operator_confirmation"
EXECUTING = "executing"
EXECUTED = "executed"
EXECUTED_UNCONFIRMED = "executed_unconfirmed"
EXECUTION_AMBIGUOUS = "execution_ambiguous"
EXECUTION_FAILED = "execution_failed"
OUTCOMES = frozenset({EXECUTED, EXECUTED_UNCONFIRMED, EXECUTION_AMBIGUOUS, EXECUTION_FAILED})
FINAL_OUTCOMES = frozenset({EXECUTED, EXECUTED_UNCONFIRMED})
RETRYABLE_OUTCOMES = frozenset({EXECUTION_AMBIGUOUS, EXECUTION_FAILED})
INTENTS = frozenset({"cancel", "approve", "reject"})

COND_APPROVED = model_conditions.APPROVED
COND_EXECUTED = model_conditions.EXECUTED

ANNOTATION_APPROVED = model_intent.APPROVED_ANNOTATION
ANNOTATION_APPROVED_BY = model_intent.APPROVED_BY_ANNOTATION
ANNOTATION_APPROVED_AT = model_intent.APPROVED_AT_ANNOTATION
ANNOTATION_NOTE = model_intent.NOTE_ANNOTATION

# Control-engine / reference statuses -> HandoffIntent outcome. Anything unknown is treated as
# ambiguous: we cannot prove the side effect did not happen, so we must not run it again blindly.
_CONTROL_TO_OUTCOME: Mapping[str, str] = {
    "confirmed": EXECUTED,
    "executed": EXECUTED,
    "executed_unconfirmed": EXECUTED_UNCONFIRMED,
    "ambiguous": EXECUTION_AMBIGUOUS,
    "execution_ambiguous": EXECUTION_AMBIGUOUS,
    "failed_command": EXECUTION_FAILED,
    "execution_failed": EXECUTION_FAILED,
}
_OUTCOME_REASON_CODE: Mapping[str, str] = {
    EXECUTION_AMBIGUOUS: "control_ambiguous",
    EXECUTION_FAILED: "control_failed_command",
}


@dataclasses.dataclass(frozen=True)
class Approval:
    """A complete approval read from the annotations."""

    by: str
    at: str | None = None
    note: str | None = None

    @property
    def fingerprint(self) -> str:
        return f"{self.by}|{self.at or ''}|{self.note or ''}"

    def to_status(self) -> JsonObject:
        record: JsonObject = {"by": self.by, "fingerprint": self.fingerprint}
        if self.at:
            record["at"] = self.at
        if self.note:
            record["note"] = self.note
        return record


@dataclasses.dataclass(frozen=True)
class ApprovalParse:
    """``approval`` when complete; ``problem`` says why an approval attempt is not accepted."""

    approval: Approval | None = None
    problem: str | None = None


def parse_approval(annotations: Mapping[str, str] | None) -> ApprovalParse:
    """Read the approval annotations, failing closed on anything but a complete ``"true"``."""
    notes = annotations or {}
    raw = notes.get(ANNOTATION_APPROVED)
    if raw is None:
        return ApprovalParse()
    if str(raw).strip().lower() != "true":
        return ApprovalParse(problem=f'{ANNOTATION_APPROVED} must be "true" to approve, got {raw!r}')
    by = str(notes.get(ANNOTATION_APPROVED_BY, "")).strip()
    if not by:
        return ApprovalParse(problem=f"{ANNOTATION_APPROVED_BY} is required with {ANNOTATION_APPROVED}")
    at = str(notes.get(ANNOTATION_APPROVED_AT, "")).strip() or None
    note = str(notes.get(ANNOTATION_NOTE, "")).strip() or None
    return ApprovalParse(approval=Approval(by=by, at=at, note=note))


@dataclasses.dataclass(frozen=True)
class Await:
    """Stay pending (or keep a retryable outcome) until a usable approval arrives."""

    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class Execute:
    """Record ``executing`` with this key, then run the intent once."""

    approval: Approval
    idempotency_key: str
    attempt: int


@dataclasses.dataclass(frozen=True)
class Recover:
    """Found ``executing`` without an outcome: consult the journal, else declare it ambiguous."""

    idempotency_key: str | None


@dataclasses.dataclass(frozen=True)
class Finished:
    """An outcome is recorded and no new approval asks for more: nothing to do."""


Decision = Await | Execute | Recover | Finished


def build_idempotency_key(*, spec_key: str | None, intent: str, name: str, uid: str, attempt: int) -> str:
    """Stable per (object, attempt): the spec's key for the first attempt, a suffixed one after.

    A retry after an ambiguous or failed outcome must not reuse the key: the sprite service
    would answer it from its idempotency store instead of acting again.
    """
    base = (spec_key or "").strip() or f"{intent}-{name}-{uid[:8] if uid else 'nouid'}"
    return base if attempt <= 1 else f"{base}-attempt{attempt}"


def _result(status: Mapping[str, Any]) -> Mapping[str, Any]:
    result = status.get("result")
    return result if isinstance(result, Mapping) else {}


def decide_intent(
    *,
    status: Mapping[str, Any] | None,
    approval: ApprovalParse,
    spec_key: str | None,
    intent: str,
    name: str,
    uid: str,
) -> Decision:
    """What to do with a HandoffIntent given its status and annotations."""
    current = dict(status or {})
    phase = current.get("phase")
    raw_attempt = _result(current).get("attempt")
    attempt = raw_attempt if isinstance(raw_attempt, int) else 0
    consumed_record = _result(current).get("approval")
    consumed = consumed_record.get("fingerprint") if isinstance(consumed_record, Mapping) else None
    if phase == EXECUTING:
        key = current.get("idempotencyKey")
        return Recover(idempotency_key=str(key) if key else None)
    if phase in FINAL_OUTCOMES:
        return Finished()
    usable = approval.approval is not None and approval.approval.fingerprint != consumed
    if phase in RETRYABLE_OUTCOMES:
        if not usable:
            return Finished()
    elif not usable:
        return Await(problem=approval.problem)
    assert approval.approval is not None
    next_attempt = attempt + 1
    key = build_idempotency_key(spec_key=spec_key, intent=intent, name=name, uid=uid, attempt=next_attempt)
    return Execute(approval=approval.approval, idempotency_key=key, attempt=next_attempt)


def compute_outcome_from_control(control_status: str | None) -> str:
    """Map a control status (engine or reference vocabulary) to a HandoffIntent outcome."""
    if control_status is None:
        return EXECUTION_AMBIGUOUS
    return _CONTROL_TO_OUTCOME.get(control_status, EXECUTION_AMBIGUOUS)


def _conditions(
    prev: Mapping[str, Any], desired: list[ConditionSpec], generation: int, now: dt.datetime
) -> Any:
    previous = prev.get("conditions") if isinstance(prev.get("conditions"), list) else None
    return build_conditions(previous, desired, generation=generation, now=now)


def build_pending_status(
    *, previous: Mapping[str, Any] | None, problem: str | None, generation: int, now: dt.datetime
) -> JsonObject:
    """Status of an intent waiting for a person (a retryable outcome keeps its phase)."""
    prev = dict(previous or {})
    status: JsonObject = dict(prev)
    status["observedGeneration"] = generation
    if prev.get("phase") in RETRYABLE_OUTCOMES:
        return status
    status["phase"] = PENDING
    approved = ConditionSpec(
        COND_APPROVED,
        "False",
        "ApprovalInvalid" if problem else "AwaitingApproval",
        problem or "annotate ops.superloop.dev/approved=true with ops.superloop.dev/approved-by",
    )
    executed = ConditionSpec(COND_EXECUTED, "False", "NotExecuted", "waiting for an operator approval")
    status.update(summarize_reasons(status))
    status["conditions"] = _conditions(prev, [approved, executed], generation, now)
    return status


def build_executing_status(
    *, previous: Mapping[str, Any] | None, decision: Execute, generation: int, now: dt.datetime
) -> JsonObject:
    """Status recorded *before* the side effect: the crash rule depends on it."""
    prev = dict(previous or {})
    old_result = _result(prev)
    result: JsonObject = {"attempt": decision.attempt, "approval": decision.approval.to_status()}
    history = list(old_result.get("previousAttempts") or [])
    if prev.get("phase") in RETRYABLE_OUTCOMES:
        history.append(
            {
                "attempt": old_result.get("attempt"),
                "phase": prev.get("phase"),
                "idempotencyKey": prev.get("idempotencyKey"),
                "approvedBy": prev.get("approvedBy"),
                "completedAt": prev.get("completedAt"),
            }
        )
    if history:
        result["previousAttempts"] = history[-10:]
    status: JsonObject = {key: value for key, value in prev.items() if key not in ("completedAt",)}
    status.update(
        {
            "observedGeneration": generation,
            "phase": EXECUTING,
            "mode": "manual",
            "approvedBy": decision.approval.by,
            "idempotencyKey": decision.idempotency_key,
            "reasonCodes": [],
            "startedAt": format_ts(now),
            "result": result,
        }
    )
    status.update(summarize_reasons(status))
    status["conditions"] = _conditions(
        prev,
        [
            ConditionSpec(COND_APPROVED, "True", "Approved", f"approved by {decision.approval.by}"),
            ConditionSpec(
                COND_EXECUTED, "Unknown", "Executing", f"executing with key {decision.idempotency_key}"
            ),
        ],
        generation,
        now,
    )
    return status


_EXECUTED_CONDITION: Mapping[str, tuple[str, str]] = {
    EXECUTED: ("True", "Executed"),
    EXECUTED_UNCONFIRMED: ("True", "ExecutedUnconfirmed"),
    EXECUTION_AMBIGUOUS: ("Unknown", "ExecutionAmbiguous"),
    EXECUTION_FAILED: ("False", "ExecutionFailed"),
}


def build_outcome_status(
    *,
    previous: Mapping[str, Any],
    outcome: str,
    execution: Mapping[str, Any] | None,
    message: str,
    generation: int,
    now: dt.datetime,
) -> JsonObject:
    """Status after the outcome is known (or declared ambiguous by the crash rule).

    ``execution`` is the control engine's record of the attempt (the intents.jsonl row shape),
    kept under ``result.execution`` next to the approval it consumed.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"not a HandoffIntent outcome: {outcome}")
    prev = dict(previous)
    status: JsonObject = dict(prev)
    result: JsonObject = dict(_result(prev))
    if execution is not None:
        result["execution"] = dict(execution)
    result["outcome"] = outcome
    status.update(
        {"observedGeneration": generation, "phase": outcome, "completedAt": format_ts(now), "result": result}
    )
    reason_code = _OUTCOME_REASON_CODE.get(outcome)
    status["reasonCodes"] = [reason_code] if reason_code else []
    approver = prev.get("approvedBy")
    cond_status, reason = _EXECUTED_CONDITION[outcome]
    by = f" (approved by {approver})" if approver else ""
    status.update(summarize_reasons(status))
    status["conditions"] = _conditions(
        prev, [ConditionSpec(COND_EXECUTED, cond_status, reason, f"{message}{by}"[:1024])], generation, now
    )
    return status


@dataclasses.dataclass(frozen=True)
class IntentEvent:
    type: str
    reason: str
    message: str


def _approval_reason(status: Mapping[str, Any] | None) -> tuple[Any, Any]:
    cond = find_condition((status or {}).get("conditions"), COND_APPROVED)
    return (cond or {}).get("reason"), (cond or {}).get("message")


def compute_intent_events(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[IntentEvent]:
    """Events on HandoffIntent phase transitions (and on a newly rejected approval attempt)."""
    old_phase = (previous or {}).get("phase")
    new_phase = new.get("phase")
    if new_phase == old_phase:
        reason, message = _approval_reason(new)
        if reason == "ApprovalInvalid" and _approval_reason(previous) != (reason, message):
            return [IntentEvent("Warning", "ApprovalInvalid", str(message))]
        return []
    approver = new.get("approvedBy")
    key = new.get("idempotencyKey")
    if new_phase == PENDING:
        return [IntentEvent("Normal", "AwaitingApproval", "waiting for ops.superloop.dev/approved=true")]
    if new_phase == EXECUTING:
        return [IntentEvent("Normal", "Executing", f"approved by {approver}; executing with key {key}")]
    if new_phase == EXECUTED:
        return [
            IntentEvent("Normal", "Executed", f"executed and confirmed (approved by {approver}, key {key})")
        ]
    if new_phase == EXECUTED_UNCONFIRMED:
        return [IntentEvent("Normal", "ExecutedUnconfirmed", f"executed (approved by {approver}, key {key})")]
    if new_phase == EXECUTION_AMBIGUOUS:
        return [
            IntentEvent(
                "Warning",
                "ExecutionAmbiguous",
                f"outcome unknown (approved by {approver}, key {key}); inspect the runtime and "
                "approve again to retry",
            )
        ]
    if new_phase == EXECUTION_FAILED:
        return [
            IntentEvent("Warning", "ExecutionFailed", f"execution failed (approved by {approver}, key {key})")
        ]
    return []


# ---------------------------------------------------------------------------------------------
# intents a Fleet proposes and executes autonomously
#
# Autonomous executions are recorded with ``status.mode: autonomous``; the manual path leaves
# such objects alone until a person approves again (the retry guard), at which point
# ``build_manual_handover_status`` hands the object to the manual path with the autonomous
# attempt kept as attempt 1.


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def build_intent_manifest(
    *,
    fleet_name: str,
    fleet_uid: str,
    intent: Mapping[str, Any],
    loop_name: str,
) -> JsonObject:
    """The HandoffIntent proposed for one plan intent, owned by the Fleet (spec is immutable)."""
    autonomous = _obj(intent.get("autonomous"))
    candidate: JsonObject = {
        "candidateId": intent.get("candidateId"),
        "category": intent.get("category"),
        "reasonCodes": [str(r) for r in autonomous.get("reasons") or []][:64],
        "severity": intent.get("severity"),
        "confidence": intent.get("confidence"),
        "rationale": intent.get("rationale"),
        "autonomousEligible": autonomous.get("eligible") is True,
    }
    key = str(intent.get("idempotencyKey") or "")
    if len(key) > 253:
        key = f"{key[:240]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    spec: JsonObject = {
        "loopRef": {"name": loop_name},
        "intent": intent.get("intent"),
        "note": f"fleet {fleet_name}: {intent.get('rationale') or intent.get('category')}",
        "candidate": {k: v for k, v in candidate.items() if v is not None},
        "fleetRef": {"name": fleet_name},
    }
    if key:
        spec["idempotencyKey"] = key
    if intent.get("fleetTraceId"):
        spec["traceId"] = str(intent["fleetTraceId"])[:253]
    return {
        "apiVersion": API_VERSION,
        "kind": "HandoffIntent",
        "metadata": {
            "name": compute_intent_name(fleet_name, str(intent["intentId"])),
            "labels": {FLEET_LABEL: compute_dns_name(fleet_name), MANAGED_BY_LABEL: MANAGER},
            "annotations": {INTENT_ID_ANNOTATION: str(intent["intentId"])},
            "ownerReferences": [build_owner_reference(fleet_name, fleet_uid)],
        },
        "spec": spec,
    }


def build_autonomous_executing_status(
    *, previous: Mapping[str, Any] | None, idempotency_key: str, generation: int, now: dt.datetime
) -> JsonObject:
    """Recorded before the autonomous side effect (the crash rule depends on it)."""
    prev = dict(previous or {})
    status: JsonObject = {k: v for k, v in prev.items() if k != "completedAt"}
    status.update(
        {
            "observedGeneration": generation,
            "phase": EXECUTING,
            "mode": "autonomous",
            "approvedBy": None,
            "idempotencyKey": idempotency_key,
            "reasonCodes": [],
            "startedAt": format_ts(now),
            "result": {"attempt": 1, "autonomous": True},
        }
    )
    status = {k: v for k, v in status.items() if v is not None}
    previous_conditions = prev.get("conditions") if isinstance(prev.get("conditions"), list) else None
    status.update(summarize_reasons(status))
    status["conditions"] = build_conditions(
        previous_conditions,
        [
            ConditionSpec(
                COND_APPROVED,
                "True",
                "AutonomousPolicy",
                "eligible under the guarded_auto policy",
            ),
            ConditionSpec(
                COND_EXECUTED,
                "Unknown",
                "Executing",
                f"executing autonomously with key {idempotency_key}",
            ),
        ],
        generation=generation,
        now=now,
    )
    return status


def build_autonomous_outcome_status(
    *,
    previous: Mapping[str, Any],
    outcome: str,
    execution: Mapping[str, Any] | None,
    message: str,
    generation: int,
    now: dt.datetime,
) -> JsonObject:
    """Outcome of an autonomous execution; the mode stays ``autonomous``."""
    status = build_outcome_status(
        previous=previous,
        outcome=outcome,
        execution=execution,
        message=message,
        generation=generation,
        now=now,
    )
    status["mode"] = "autonomous"
    return status


def build_manual_handover_status(previous: Mapping[str, Any]) -> JsonObject | None:
    """Hand a retry-guarded autonomous intent to the manual path (a person approved it).

    Only an autonomous ``execution_ambiguous`` / ``execution_failed`` intent is handed over; the
    phase is kept, so the manual state machine treats the approval as a retry (attempt 2, a new
    idempotency key) and records the autonomous attempt under ``result.previousAttempts``.
    """
    if previous.get("mode") != "autonomous" or previous.get("phase") not in RETRYABLE_OUTCOMES:
        return None
    status = dict(previous)
    result = dict(_obj(previous.get("result")))
    result["attempt"] = result.get("attempt") if isinstance(result.get("attempt"), int) else 1
    result["autonomousAttempt"] = {
        "phase": previous.get("phase"),
        "idempotencyKey": previous.get("idempotencyKey"),
        "completedAt": previous.get("completedAt"),
    }
    status["result"] = result
    status["mode"] = "manual"
    status["approvedBy"] = "autonomous-policy"
    return status
