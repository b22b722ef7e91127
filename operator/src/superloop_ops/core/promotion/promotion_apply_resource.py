"""PromotionApply controller, pure part: verdict as reason codes, posture in force, status, Events.

A PromotionApply is evaluated once. The shell gathers the Fleet, its FleetPolicy, the promotion
decision and the journal's earlier records; ``decide_apply`` turns the promotion core's gating
(``core.promotion.apply_rules``: ``expand``/``resume`` need ``promote``, ``rollback`` is always
allowed, then the review date) into reason codes; the replay, the posture move and the apply
record are the promotion core's ``compute_promotion_apply``, shared with the CLI.

The posture lives in FleetPolicy status (``effectiveRollout``), never in spec: spec stays
GitOps-owned. ``compute_current_posture`` re-bases on spec when the policy has a generation
the effective posture was not computed for, so a new spec always wins; the kill switch is a spec
field the posture never touches, so it wins too.

Reference failures (``error: <msg>``, exit 1) become reason codes (CamelCase on the ``Applied``
condition) with the reference's message kept as the condition message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.common.status_conditions import (
    ConditionSpec,
    build_conditions,
    camel_reason,
    find_condition,
    summarize_reasons,
)
from superloop_ops.core.promotion import apply_rules
from superloop_ops.errors import ContractError
from superloop_ops.models import conditions as model_conditions

__all__ = [
    "APPLIED",
    "CODE_DECISION_MISSING",
    "CODE_DECISION_NOT_PROMOTE",
    "CODE_DRY_RUN",
    "CODE_FLEET_NOT_FOUND",
    "CODE_INVALID_SPEC",
    "CODE_MODE_NOT_GUARDED_AUTO",
    "CODE_POLICY_NOT_FOUND",
    "CODE_REPLAYED",
    "CODE_REVIEW_BY_INVALID",
    "CODE_REVIEW_EXPIRED",
    "DRY_RUN",
    "PENDING",
    "REJECTED",
    "REPLAYED",
    "TERMINAL_PHASES",
    "OperatorRequest",
    "PromotionEvent",
    "Verdict",
    "build_effective_rollout",
    "build_operator_request",
    "build_promotion_status",
    "compute_apply_id",
    "compute_current_posture",
    "compute_promotion_events",
    "decide_apply",
    "describe_record",
    "find_record",
]

PENDING = "pending"
APPLIED = "applied"
REPLAYED = "replayed"
DRY_RUN = "dry_run"
REJECTED = "rejected"
TERMINAL_PHASES = frozenset({APPLIED, REPLAYED, DRY_RUN, REJECTED})

CODE_DECISION_MISSING = "promotion_apply_decision_missing"
CODE_DECISION_NOT_PROMOTE = "promotion_apply_decision_not_promote"
CODE_REVIEW_BY_INVALID = "promotion_apply_review_by_invalid"
CODE_REVIEW_EXPIRED = "promotion_apply_review_expired"
CODE_MODE_NOT_GUARDED_AUTO = "promotion_apply_mode_not_guarded_auto"
CODE_FLEET_NOT_FOUND = "promotion_apply_fleet_not_found"
CODE_POLICY_NOT_FOUND = "promotion_apply_policy_not_found"
CODE_INVALID_SPEC = "promotion_apply_invalid_spec"
CODE_REPLAYED = "promotion_apply_replayed"
CODE_DRY_RUN = "promotion_apply_dry_run"

_GATED_INTENTS = frozenset({"expand", "resume"})
_MAX_MESSAGE = 1024


@dataclasses.dataclass(frozen=True)
class OperatorRequest:
    """A PromotionApply spec: the promotion core's request (review date resolved) plus ``dryRun``."""

    apply: apply_rules.ApplyRequest
    dry_run: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the gating said: ``proceed`` (then replay/mode/apply follow) or ``reject`` with a code."""

    action: Literal["proceed", "reject"]
    reason_code: str | None = None
    message: str = ""


@dataclasses.dataclass(frozen=True)
class PromotionEvent:
    """A Kubernetes Event to post (``type`` Normal or Warning)."""

    type: str
    reason: str
    message: str


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def compute_apply_id(name: str, uid: str) -> str:
    """How FleetPolicy status names the PromotionApply that last moved the posture."""
    return f"{name}/{uid}"


def build_operator_request(
    *,
    intent: apply_rules.ApplyIntent,
    expand_step: int,
    by: str,
    approval_ref: str,
    rationale: str,
    review_by: str | None,
    review_within_days: int | None,
    idempotency_key: str | None,
    dry_run: bool,
    now: dt.datetime,
) -> OperatorRequest:
    """The core request; ``reviewWithinDays`` becomes a timestamp relative to this evaluation."""
    resolved = apply_rules.compute_review_by(review_by, review_within_days, now.replace(microsecond=0))
    request = apply_rules.ApplyRequest(
        intent=intent,
        by=by,
        approval_ref=approval_ref,
        rationale=rationale,
        review_by=resolved,
        expand_step=expand_step,
        idempotency_key=idempotency_key or None,
    )
    return OperatorRequest(apply=request, dry_run=dry_run)


def decide_apply(request: apply_rules.ApplyRequest, *, decision: str | None, now: dt.datetime) -> Verdict:
    """Decision gating then review-date checks, in the reference's order (§3.2 steps 4-6).

    A missing decision blocks ``expand``/``resume`` only: in the operator a safety rollback must
    never wait for evidence (the reference also refuses a rollback without a promotion state).
    """
    if request.intent != "rollback" and not decision:
        return Verdict("reject", CODE_DECISION_MISSING, "promotion state missing summary.decision")
    gate = apply_rules.compute_decision_gate(request.intent, decision)
    if gate is not None:
        return Verdict("reject", CODE_DECISION_NOT_PROMOTE, gate)
    try:
        apply_rules.validate_review_by(request.review_by, now)
    except ContractError as exc:
        code = CODE_REVIEW_BY_INVALID if "ISO-8601" in str(exc) else CODE_REVIEW_EXPIRED
        return Verdict("reject", code, f"{exc} (reviewBy {request.review_by})")
    return Verdict("proceed")


def compute_current_posture(
    *,
    spec_canary_percent: int,
    spec_manual_pause: bool,
    effective: Mapping[str, Any] | None,
    generation: int,
) -> apply_rules.RolloutPosture:
    """The posture in force: the effective one if it was based on this policy generation, else spec."""
    current = _obj(effective)
    if current.get("basedOnGeneration") != generation:
        return apply_rules.RolloutPosture(spec_canary_percent, spec_manual_pause)
    canary = current.get("canaryPercent")
    pause = current.get("manualPause")
    return apply_rules.RolloutPosture(
        canary if isinstance(canary, int) and not isinstance(canary, bool) else spec_canary_percent,
        pause if isinstance(pause, bool) else spec_manual_pause,
    )


def find_record(
    rows: Sequence[Any], *, key: str | None = None, trace_id: str | None = None
) -> JsonObject | None:
    """The last journal record with this idempotency key (or trace id); None when there is none."""
    found: JsonObject | None = None
    for row in rows:
        if not isinstance(row, Mapping) or row.get("category", "promotion_apply") != "promotion_apply":
            continue
        by_key = key is not None and (row.get("idempotencyKey") or "") == key
        if by_key or (trace_id is not None and row.get("traceId") == trace_id):
            found = dict(row)
    return found


def build_effective_rollout(record: Mapping[str, Any], *, generation: int, apply_id: str) -> JsonObject:
    """FleetPolicy ``status.effectiveRollout`` after an apply (governance as the reference writes it)."""
    after = _obj(_obj(record.get("rollout")).get("after"))
    return {
        "canaryPercent": after.get("canaryPercent"),
        "manualPause": after.get("manualPause"),
        "basedOnGeneration": generation,
        "lastApply": apply_id,
        "changedAt": record.get("timestamp"),
        "governance": dict(_obj(record.get("governance"))),
    }


def describe_record(record: Mapping[str, Any]) -> str:
    """``expand: canaryPercent 25 -> 50, manualPause true -> false`` (condition messages, Events)."""
    rollout = _obj(record.get("rollout"))
    before, after = _obj(rollout.get("before")), _obj(rollout.get("after"))
    canary = f"{before.get('canaryPercent')} -> {after.get('canaryPercent')}"
    pause = f"{str(before.get('manualPause')).lower()} -> {str(after.get('manualPause')).lower()}"
    return f"{record.get('intent')}: canaryPercent {canary}, manualPause {pause}"


def build_promotion_status(
    *,
    previous: Mapping[str, Any] | None,
    generation: int,
    now: dt.datetime,
    phase: str,
    decision: str | None,
    reason_codes: Sequence[str] = (),
    message: str = "",
    review_by: str | None = None,
    record: Mapping[str, Any] | None = None,
) -> JsonObject:
    """The PromotionApply status for one phase, with the ``Applied`` condition.

    ``applied``/``replayed`` carry the record and ``appliedAt`` (the record's timestamp), written
    together and once: the CRD freezes both. An existing record is never replaced.
    """
    prev = dict(previous or {})
    status: JsonObject = {"observedGeneration": generation, "phase": phase}
    if decision is not None:
        status["decision"] = decision
    status["reasonCodes"] = list(dict.fromkeys(reason_codes))
    if record is not None and phase in (APPLIED, REPLAYED):
        message = message or describe_record(record)
    status["message"] = message[:_MAX_MESSAGE]
    if review_by is not None:
        status["reviewBy"] = review_by
    if "record" in prev:
        status["record"] = prev["record"]
        status["appliedAt"] = prev.get("appliedAt")
    elif record is not None:
        status["record"] = dict(record)
        status["appliedAt"] = record.get("timestamp")
    if phase == APPLIED:
        cond = ConditionSpec(model_conditions.APPLIED, "True", "Applied", status["message"])
    elif phase == REPLAYED:
        cond = ConditionSpec(model_conditions.APPLIED, "True", "Replayed", status["message"])
    elif phase == DRY_RUN:
        cond = ConditionSpec(model_conditions.APPLIED, "False", "DryRun", status["message"])
    else:
        code = reason_codes[0] if reason_codes else ("promotion_apply_pending" if phase == PENDING else phase)
        cond = ConditionSpec(
            model_conditions.APPLIED,
            "False" if phase == REJECTED else "Unknown",
            camel_reason(code),
            status["message"],
        )
    previous_conditions = prev.get("conditions") if isinstance(prev.get("conditions"), list) else None
    status.update(summarize_reasons(status))
    status["conditions"] = build_conditions(previous_conditions, [cond], generation=generation, now=now)
    return {k: v for k, v in status.items() if v is not None}


_EVENT_REASONS = {
    APPLIED: ("Normal", "PromotionApplied"),
    REPLAYED: ("Normal", "PromotionReplayed"),
    DRY_RUN: ("Normal", "PromotionDryRun"),
    REJECTED: ("Warning", "PromotionRejected"),
}


def compute_promotion_events(
    previous: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> list[PromotionEvent]:
    """One Event per transition of the ``Applied`` condition (phase or reason), none otherwise."""
    old = find_condition(_obj(previous).get("conditions"), model_conditions.APPLIED) or {}
    cur = find_condition(new.get("conditions"), model_conditions.APPLIED) or {}
    if (old.get("status"), old.get("reason")) == (cur.get("status"), cur.get("reason")) and _obj(
        previous
    ).get("phase") == new.get("phase"):
        return []
    phase = str(new.get("phase") or PENDING)
    kind, reason = _EVENT_REASONS.get(phase, ("Warning", str(cur.get("reason") or "PromotionPending")))
    return [PromotionEvent(kind, reason, str(new.get("message") or ""))]
