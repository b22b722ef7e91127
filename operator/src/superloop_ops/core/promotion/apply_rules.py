"""Promotion apply: turn a promotion decision into one governed rollout step (promotion §3).

Pure rules, in the contract's order: flag validation, decision gating (``expand``/``resume`` need
``promote``; ``rollback`` is safety-allowed on any decision), review-by checks, idempotent replay,
then the posture change and the apply record. Two callers share them:

* the CLI's local mode patches the registry file: ``build_patched_registry`` changes only
  ``canaryPercent``, ``pause.manual`` and the five governance fields (the reference rewrote the
  whole normalised projection, with a stale temp path in ``sourceFile``);
* the PromotionApply controller moves the *effective* posture held in FleetPolicy status:
  ``compute_promotion_apply`` takes the current posture and returns the new one.

Every failure raises ``ContractError`` with the contract's message; nothing is partially decided.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.errors import ContractError
from superloop_ops.models.fleet_policy import DEFAULT_CANARY_PERCENT

__all__ = [
    "INTENTS",
    "ApplyGovernance",
    "ApplyIntent",
    "ApplyOutcome",
    "ApplyRequest",
    "RolloutPosture",
    "build_apply_record",
    "build_apply_request",
    "build_patched_registry",
    "build_replay_record",
    "check_apply_allowed",
    "compute_decision_gate",
    "compute_posture_after",
    "compute_promotion_apply",
    "compute_review_by",
    "find_replay_record",
    "parse_expand_step",
    "read_registry_posture",
    "require_guarded_auto",
    "select_decision",
    "validate_review_by",
]

ApplyIntent = Literal["expand", "resume", "rollback"]
INTENTS: tuple[ApplyIntent, ...] = ("expand", "resume", "rollback")
_DIGITS = re.compile(r"\A[0-9]+\Z")


def _coalesce(value: Any, default: Any) -> Any:
    return default if value is None or value is False else value


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _text(value: Any) -> str:
    """A value as ``jq -r`` prints it: strings raw, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# request


@dataclasses.dataclass(frozen=True)
class ApplyRequest:
    """One validated apply request (the CLI flags, or a PromotionApply spec)."""

    intent: ApplyIntent
    by: str
    approval_ref: str
    rationale: str
    review_by: str
    expand_step: int = 25
    idempotency_key: str | None = None


def parse_expand_step(value: str) -> int:
    """Plain decimal digits within 1..100 (leading zeros accepted, unlike bash's octal)."""
    if not _DIGITS.match(value) or not 1 <= int(value) <= 100:
        raise ContractError("--expand-step must be an integer between 1 and 100")
    return int(value)


def build_apply_request(
    *,
    intent: str | None,
    expand_step: str,
    by: str | None,
    approval_ref: str | None,
    rationale: str | None,
    review_by: str | None,
    idempotency_key: str | None = None,
) -> ApplyRequest:
    """Validate in the contract's order: intent, expand-step (for every intent), then governance."""
    if intent not in INTENTS:
        raise ContractError("--intent must be one of expand, resume, rollback")
    step = parse_expand_step(expand_step)
    for flag, value in (
        ("--by", by),
        ("--approval-ref", approval_ref),
        ("--rationale", rationale),
        ("--review-by", review_by),
    ):
        if not value:
            raise ContractError(f"{flag} is required")
    return ApplyRequest(
        intent=intent,
        by=str(by),
        approval_ref=str(approval_ref),
        rationale=str(rationale),
        review_by=str(review_by),
        expand_step=step,
        idempotency_key=idempotency_key or None,
    )


def compute_review_by(review_by: str | None, review_within_days: int | None, now: dt.datetime) -> str:
    """The review deadline as a timestamp: given outright, or ``now`` plus whole days."""
    if review_by is not None:
        return review_by
    if review_within_days is None:
        raise ContractError("--review-by is required")
    return format_ts(now + dt.timedelta(days=review_within_days))


# ---------------------------------------------------------------------------------------------
# gating


def select_decision(promotion_state: Any) -> Any:
    """``summary.decision`` of a promotion state (or CI result) document; fails when absent/empty."""
    decision = _coalesce(_field(_field(promotion_state, "summary"), "decision"), None)
    if decision is None or decision == "":
        raise ContractError("promotion state missing summary.decision")
    return decision


def compute_decision_gate(intent: ApplyIntent, decision: Any) -> str | None:
    """The refusal message, or None: only ``rollback`` may run without a ``promote`` decision."""
    if intent != "rollback" and decision != "promote":
        return f"intent {intent} requires promotion decision promote (found: {_text(decision)})"
    return None


def validate_review_by(review_by: str, now: dt.datetime) -> dt.datetime:
    """Strict ``YYYY-MM-DDTHH:MM:SSZ`` and strictly later than ``now`` (whole seconds)."""
    parsed = parse_ts(review_by)
    if parsed is None:
        raise ContractError("--review-by must be an ISO-8601 timestamp")
    if parsed <= now.replace(microsecond=0):
        raise ContractError("--review-by must be in the future")
    return parsed


def check_apply_allowed(request: ApplyRequest, decision: Any, now: dt.datetime) -> None:
    """Decision gating, then the review-by format and future checks (they precede any replay)."""
    gate = compute_decision_gate(request.intent, decision)
    if gate is not None:
        raise ContractError(gate)
    validate_review_by(request.review_by, now)


def require_guarded_auto(registry: Any) -> None:
    """Promotion only moves a fleet whose policy mode is ``guarded_auto`` (default ``advisory``)."""
    if _coalesce(_field(_field(registry, "policy"), "mode"), "advisory") != "guarded_auto":
        raise ContractError("promotion apply requires policy.mode guarded_auto")


# ---------------------------------------------------------------------------------------------
# replay


def find_replay_record(rows: Iterable[Any], idempotency_key: str | None) -> JsonObject | None:
    """The **last** earlier record with this key (parameters are not compared: contract fact)."""
    if not idempotency_key:
        return None
    prior: JsonObject | None = None
    for row in rows:
        if isinstance(row, Mapping) and _coalesce(row.get("idempotencyKey"), "") == idempotency_key:
            prior = dict(row)
    return prior


def build_replay_record(prior: Mapping[str, Any]) -> JsonObject:
    """The prior record with ``replayed: true`` as its last key."""
    record = {key: value for key, value in prior.items() if key != "replayed"}
    record["replayed"] = True
    return record


# ---------------------------------------------------------------------------------------------
# posture


@dataclasses.dataclass(frozen=True)
class RolloutPosture:
    """The two rollout fields a promotion step moves."""

    canary_percent: int
    manual_pause: bool

    def to_json(self) -> JsonObject:
        return {"canaryPercent": self.canary_percent, "manualPause": self.manual_pause}


def read_registry_posture(registry: Any) -> RolloutPosture:
    """Posture of a (raw or normalised) registry: canary defaults to 100, pause to false."""
    rollout = _field(_field(_field(registry, "policy"), "autonomous"), "rollout")
    canary = _coalesce(_field(rollout, "canaryPercent"), DEFAULT_CANARY_PERCENT)
    manual = _field(_field(rollout, "pause"), "manual")
    return RolloutPosture(canary_percent=canary, manual_pause=manual is True)


def compute_posture_after(before: RolloutPosture, intent: ApplyIntent, expand_step: int) -> RolloutPosture:
    """expand: canary + step (capped at 100), unpaused; resume: unpaused; rollback: paused.

    Rollback never shrinks the canary: it stops autonomy through the manual pause.
    """
    if intent == "expand":
        return RolloutPosture(min(before.canary_percent + expand_step, 100), False)
    if intent == "resume":
        return RolloutPosture(before.canary_percent, False)
    return RolloutPosture(before.canary_percent, True)


@dataclasses.dataclass(frozen=True)
class ApplyGovernance:
    """The governance block every apply writes (it replaces the previous one wholesale)."""

    actor: str
    approval_ref: str
    rationale: str
    changed_at: str
    review_by: str

    def to_json(self) -> JsonObject:
        return {
            "actor": self.actor,
            "approvalRef": self.approval_ref,
            "rationale": self.rationale,
            "changedAt": self.changed_at,
            "reviewBy": self.review_by,
        }


def build_patched_registry(
    raw: Mapping[str, Any], after: RolloutPosture, governance: ApplyGovernance
) -> JsonObject:
    """A copy of the raw registry with only the promotion fields changed; nothing derived added."""
    registry = copy.deepcopy(dict(raw))
    policy = registry.setdefault("policy", {})
    autonomous = policy.setdefault("autonomous", {})
    rollout = autonomous.setdefault("rollout", {})
    rollout["canaryPercent"] = after.canary_percent
    pause = rollout.get("pause")
    rollout["pause"] = {**(pause if isinstance(pause, Mapping) else {}), "manual": after.manual_pause}
    autonomous["governance"] = governance.to_json()
    return registry


# ---------------------------------------------------------------------------------------------
# record


def build_apply_record(
    *,
    request: ApplyRequest,
    decision: Any,
    fleet_id: str,
    trace_id: str,
    governance: ApplyGovernance,
    before: RolloutPosture,
    after: RolloutPosture,
    files: Mapping[str, str],
) -> JsonObject:
    """The apply record: state file, telemetry row and stdout share it; fresh records have no
    ``replayed`` key, and ``reasonCodes`` is always empty (failures never produce a record)."""
    return {
        "schemaVersion": "v1",
        "timestamp": governance.changed_at,
        "category": "promotion_apply",
        "fleetId": fleet_id,
        "traceId": trace_id,
        "idempotencyKey": request.idempotency_key,
        "status": "applied",
        "intent": request.intent,
        "decision": decision,
        "governance": governance.to_json(),
        "rollout": {
            "before": before.to_json(),
            "after": after.to_json(),
            "changed": {
                "canaryPercent": before.canary_percent != after.canary_percent,
                "manualPause": before.manual_pause != after.manual_pause,
            },
        },
        "files": dict(files),
        "reasonCodes": [],
    }


@dataclasses.dataclass(frozen=True)
class ApplyOutcome:
    """What one apply decided: a replay (posture untouched) or a new posture plus its record."""

    replayed: bool
    record: JsonObject
    governance: ApplyGovernance | None = None
    before: RolloutPosture | None = None
    after: RolloutPosture | None = None


def compute_promotion_apply(
    *,
    request: ApplyRequest,
    decision: Any,
    posture: RolloutPosture | None,
    fleet_id: str,
    trace_id: str,
    now: dt.datetime,
    prior_records: Iterable[Any] = (),
    files: Mapping[str, str] | None = None,
) -> ApplyOutcome:
    """Gate, replay or move the posture, in the contract's order (§3.2 steps 5-7, 10, 12, 14).

    ``posture`` may be None only when a replay is expected; without a prior record it is an error
    (the caller failed to read the current posture). ``prior_records`` are the apply telemetry rows.
    """
    check_apply_allowed(request, decision, now)
    prior = find_replay_record(prior_records, request.idempotency_key)
    if prior is not None:
        return ApplyOutcome(replayed=True, record=build_replay_record(prior))
    if posture is None:
        raise ContractError("failed to read/validate fleet registry")
    changed_at = format_ts(now)
    governance = ApplyGovernance(
        actor=request.by,
        approval_ref=request.approval_ref,
        rationale=request.rationale,
        changed_at=changed_at,
        review_by=request.review_by,
    )
    after = compute_posture_after(posture, request.intent, request.expand_step)
    record = build_apply_record(
        request=request,
        decision=decision,
        fleet_id=fleet_id,
        trace_id=trace_id,
        governance=governance,
        before=posture,
        after=after,
        files=files or {},
    )
    return ApplyOutcome(replayed=False, record=record, governance=governance, before=posture, after=after)
