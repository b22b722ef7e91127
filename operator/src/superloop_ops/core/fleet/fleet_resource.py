"""Fleet and FleetPolicy controllers, pure part: manifests, Loop-status reading, statuses, Events.

The Fleet controller never reconciles a loop itself: the Loop controller does (one pass per
Loop, at the Loop's own cadence). A fleet pass *reads* each Loop's status and turns it into the
outcome the fleet fan-out expects from a loop-level reconcile (``compute_loop_outcome``), so
the fleet engine builds the reference's fleet state, policy and handoff documents unchanged.

Names are derived, never chosen: an owned Loop is ``<fleet>-<loopId>`` and a HandoffIntent is
``<fleet>-<intentId>``, both made DNS-1123-safe, with a short hash suffix when the readable form
would be too long or had to drop characters (so two ids never map to one name).

Autonomous executions are recorded on the HandoffIntent with ``status.mode: autonomous``; the
manual handler leaves such objects alone until a person approves again (the retry guard), at
which point ``build_manual_handover_status`` hands the object to the manual path with the
autonomous attempt kept as attempt 1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.common.status_conditions import (
    ConditionSpec,
    build_conditions,
    camel_reason,
    find_condition,
    summarize_reasons,
)
from superloop_ops.core.fleet.rollup import LoopRunOutcome
from superloop_ops.core.handoff import handoff_intent_resource
from superloop_ops.models import conditions as model_conditions

__all__ = [
    "FLEET_LABEL",
    "INTENT_ID_ANNOTATION",
    "MANAGED_BY_LABEL",
    "SPEC_HASH_ANNOTATION",
    "FleetEvent",
    "LoopBinding",
    "build_autonomous_executing_status",
    "build_autonomous_outcome_status",
    "build_fleet_policy_status",
    "build_fleet_status",
    "build_intent_manifest",
    "build_manual_handover_status",
    "build_owned_loop_manifest",
    "build_owner_reference",
    "build_promotion_status",
    "compute_dns_name",
    "compute_fleet_events",
    "compute_intent_name",
    "compute_loop_name",
    "compute_loop_outcome",
    "compute_spec_hash",
    "snake_reason",
]

FLEET_LABEL = "ops.superloop.dev/fleet"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "superloop-ops"
SPEC_HASH_ANNOTATION = "ops.superloop.dev/fleet-spec-hash"
INTENT_ID_ANNOTATION = "ops.superloop.dev/intent-id"
_API_VERSION = "ops.superloop.dev/v1alpha1"
_UNSAFE = re.compile(r"[^a-z0-9-]+")
_READABLE = re.compile(r"^[a-z0-9._:-]*$")
_CAMEL_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_NAME = 63
_HASH_LEN = 8
_MAX_LISTED_INTENTS = 200
_MAX_LISTED_LOOPS = 500


def compute_dns_name(raw: str, *, max_length: int = _MAX_NAME) -> str:
    """A DNS-1123 label from ``raw``: lowercase, unsafe runs to ``-``, hashed suffix when lossy or long.

    ``.``, ``_`` and ``:`` all become ``-``; an id that had any other character (upper case,
    spaces, ...) or that does not fit gets ``-<8 hex of sha256(raw)>`` so distinct ids keep
    distinct names.
    """
    lowered = raw.lower()
    readable = _UNSAFE.sub("-", lowered.replace(".", "-").replace("_", "-").replace(":", "-")).strip("-")
    lossy = raw != lowered or not _READABLE.match(lowered)
    if not lossy and readable and len(readable) <= max_length:
        return readable
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:_HASH_LEN]
    head = readable[: max_length - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{digest}" if head else f"x-{digest}"


def compute_loop_name(fleet_name: str, loop_id: str) -> str:
    """Name of the Loop a Fleet materialises for an inline entry."""
    return compute_dns_name(f"{fleet_name}-{loop_id}")


def compute_intent_name(fleet_name: str, intent_id: str) -> str:
    """Name of the HandoffIntent proposed for a plan intent (stable per intent id)."""
    return compute_dns_name(f"{fleet_name}-{intent_id}")


def compute_spec_hash(spec: Mapping[str, Any]) -> str:
    """Fingerprint of a desired spec: the apiserver adds defaults, so specs are compared by hash."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def build_owner_reference(fleet_name: str, fleet_uid: str) -> JsonObject:
    """The Fleet as controller owner: garbage collection deletes owned objects with it."""
    return {
        "apiVersion": _API_VERSION,
        "kind": "Fleet",
        "name": fleet_name,
        "uid": fleet_uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def build_owned_loop_manifest(
    *,
    fleet_name: str,
    fleet_uid: str,
    entry: Mapping[str, Any],
    reconcile_interval_seconds: int,
    max_events: int,
) -> JsonObject:
    """The Loop for one inline registry entry (camelCase entry as in the Fleet spec)."""
    spec: JsonObject = {
        "loopId": entry["loopId"],
        "transport": entry.get("transport") or "local",
        "reconcileIntervalSeconds": reconcile_interval_seconds,
        "maxEvents": max_events,
    }
    for key in ("source", "service"):
        if entry.get(key) is not None:
            spec[key] = entry[key]
    return {
        "apiVersion": _API_VERSION,
        "kind": "Loop",
        "metadata": {
            "name": compute_loop_name(fleet_name, str(entry["loopId"])),
            "labels": {FLEET_LABEL: compute_dns_name(fleet_name), MANAGED_BY_LABEL: MANAGER},
            "annotations": {SPEC_HASH_ANNOTATION: compute_spec_hash(spec)},
            "ownerReferences": [build_owner_reference(fleet_name, fleet_uid)],
        },
        "spec": spec,
    }


@dataclasses.dataclass(frozen=True)
class LoopBinding:
    """Which Loop object stands for a registry loop id, and what its status says."""

    loop_id: str
    name: str
    status: Mapping[str, Any] | None
    suspended: bool = False


def snake_reason(reason: str) -> str:
    """``ServiceRequestFailed`` -> ``service_request_failed`` (condition reasons back to reason codes)."""
    return _CAMEL_SPLIT.sub("_", reason).lower()


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def compute_loop_outcome(status: Mapping[str, Any] | None) -> LoopRunOutcome | None:
    """The loop-level reconcile outcome a Loop's status reports; None until its first pass.

    Ready=True is a successful pass (health and transition from the mirrored surfaces);
    Ready=False is a failed one, classified by the fleet core from the health reason codes and
    the Ready reason (a transport failure code, or why the pass could not run at all).
    """
    ready = find_condition(_obj(status).get("conditions"), model_conditions.READY)
    if status is None or ready is None:
        return None
    health_status = status.get("healthStatus") or "unknown"
    codes = [str(code) for code in status.get("reasonCodes") or []]
    if ready.get("status") == "True":
        transition = _obj(_obj(status.get("state")).get("transition")).get("currentState")
        document: JsonObject = {"health": {"status": health_status, "reasonCodes": codes}}
        state = transition or status.get("lifecycle")
        if state:
            document["transition"] = {"currentState": state}
        return LoopRunOutcome(exit_code=0, document=document)
    reason = str(ready.get("reason") or "ReconcileFailed")
    return LoopRunOutcome(
        exit_code=1,
        document={
            "status": health_status,
            "reasonCodes": codes,
            "transport": {"failureCode": snake_reason(reason)},
        },
        output=str(ready.get("message") or ""),
    )


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
        "apiVersion": _API_VERSION,
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
            "phase": handoff_intent_resource.EXECUTING,
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
                handoff_intent_resource.COND_APPROVED,
                "True",
                "AutonomousPolicy",
                "eligible under the guarded_auto policy",
            ),
            ConditionSpec(
                handoff_intent_resource.COND_EXECUTED,
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
    status = handoff_intent_resource.build_outcome_status(
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
    if (
        previous.get("mode") != "autonomous"
        or previous.get("phase") not in handoff_intent_resource.RETRYABLE_OUTCOMES
    ):
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


# ---------------------------------------------------------------------------------------------
# Fleet and FleetPolicy status


@dataclasses.dataclass(frozen=True)
class FleetEvent:
    """A Kubernetes Event to post on the Fleet (``type`` Normal or Warning)."""

    type: str
    reason: str
    message: str


def _degraded_condition(state: Mapping[str, Any] | None) -> ConditionSpec:
    if not state:
        return ConditionSpec(model_conditions.DEGRADED, "Unknown", "NotReconciled", "no fleet pass yet")
    codes = [str(c) for c in state.get("reasonCodes") or []]
    problem = [c for c in codes if c != "fleet_loop_skipped"]
    if not problem:
        return ConditionSpec(model_conditions.DEGRADED, "False", "FleetHealthy", "no fleet reason codes")
    order = (
        "fleet_reconcile_failed",
        "fleet_partial_failure",
        "fleet_health_critical",
        "fleet_health_degraded",
    )
    lead = next((c for c in order if c in problem), problem[0])
    return ConditionSpec(
        model_conditions.DEGRADED, "True", camel_reason(lead), f"{state.get('status')}: {', '.join(codes)}"
    )


def _compact_loops(state: Mapping[str, Any] | None, names: Mapping[str, str]) -> list[JsonObject]:
    results = state.get("results") if state else None
    rows: list[JsonObject] = []
    for result in (results if isinstance(results, list) else [])[:_MAX_LISTED_LOOPS]:
        if not isinstance(result, Mapping):
            continue
        loop_id = str(result.get("loopId"))
        row: JsonObject = {
            "loopId": loop_id,
            "loop": names.get(loop_id),
            "status": result.get("status"),
            "reasonCode": result.get("reasonCode"),
            "healthStatus": result.get("healthStatus"),
            "transport": result.get("transport"),
            "stateFile": _obj(result.get("files")).get("stateFile"),
        }
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def _compact_handoff(
    handoff: Mapping[str, Any] | None, objects: Mapping[str, Mapping[str, Any]]
) -> JsonObject | None:
    if not handoff:
        return None
    intents: list[JsonObject] = []
    raw = handoff.get("intents")
    for intent in (raw if isinstance(raw, list) else [])[:_MAX_LISTED_INTENTS]:
        if not isinstance(intent, Mapping):
            continue
        intent_id = str(intent.get("intentId"))
        auto = _obj(intent.get("autonomous"))
        obj = _obj(objects.get(intent_id))
        intents.append(
            {
                "intentId": intent_id,
                "handoffIntent": obj.get("name"),
                "phase": obj.get("phase") or intent.get("status"),
                "loopId": intent.get("loopId"),
                "intent": intent.get("intent"),
                "eligible": auto.get("eligible") is True,
                "reasons": list(auto.get("reasons") or []),
            }
        )
    execution = _obj(handoff.get("execution"))
    block: JsonObject = {
        "traceId": handoff.get("traceId"),
        "mode": handoff.get("mode"),
        "summary": dict(_obj(handoff.get("summary"))),
        "reasonCodes": list(handoff.get("reasonCodes") or []),
        "intents": intents,
    }
    if execution:
        block["execution"] = {k: v for k, v in execution.items() if k != "results"}
    guards = handoff.get("retryGuards")
    if isinstance(guards, Mapping) and guards:
        block["retryGuards"] = {str(k): dict(_obj(v)) for k, v in guards.items()}
    return block


_PROMOTION_DECISIONS = frozenset({"promote", "hold"})


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def build_promotion_status(promotion_state: Mapping[str, Any] | None) -> JsonObject:
    """``promotionDecision`` and a compact ``promotion`` block from the gates' ``promotion-state.json``.

    The Fleet shows the latest gate decision so ``kubectl get fleets`` answers "may autonomy
    widen?" without reading the journal. Only ``promote``/``hold`` count: a missing, foreign or
    malformed document leaves both fields unset rather than showing a guess.
    """
    summary = _obj(_obj(promotion_state).get("summary"))
    decision = summary.get("decision")
    if decision not in _PROMOTION_DECISIONS:
        return {}
    state = _obj(promotion_state)
    block: JsonObject = {
        "decision": decision,
        "evaluatedAt": state.get("generatedAt"),
        "traceId": state.get("traceId"),
        "failedGates": _strings(summary.get("failedGates")),
        "reasonCodes": _strings(summary.get("reasonCodes")),
    }
    return {"promotionDecision": decision, "promotion": block}


def build_fleet_status(
    *,
    previous: Mapping[str, Any] | None,
    generation: int,
    now: dt.datetime,
    fleet_state: Mapping[str, Any] | None,
    fleet_status_surface: Mapping[str, Any] | None = None,
    handoff_state: Mapping[str, Any] | None = None,
    loop_names: Mapping[str, str] | None = None,
    intent_objects: Mapping[str, Mapping[str, Any]] | None = None,
    promotion_state: Mapping[str, Any] | None = None,
    blocked_reason: str | None = None,
    blocked_message: str = "",
) -> JsonObject:
    """The Fleet status: rollup summary, per-loop pointers, the status surface, handoff summary.

    Per-loop detail stays on the Loop objects and in the journal; the Fleet keeps one compact row
    per loop (status, reason code, health, the Loop's name and its state file), plus the latest
    promotion decision from ``promotion_state`` (``build_promotion_status``). A blocked pass
    (loops not reconciled yet, invalid registry, ...) keeps the last rollup and says why on Ready.
    """
    prev = dict(previous or {})
    status: JsonObject = {"observedGeneration": generation}
    if fleet_state is not None:
        state_summary = {k: v for k, v in fleet_state.items() if k != "results"}
        status.update(
            {
                "fleetId": fleet_state.get("fleetId"),
                "loopCount": fleet_state.get("loopCount"),
                "skippedLoopCount": fleet_state.get("skippedCount"),
                "failedLoopCount": fleet_state.get("failedCount"),
                "healthStatus": fleet_state.get("status"),
                "reasonCodes": list(fleet_state.get("reasonCodes") or []),
                "traceId": fleet_state.get("traceId"),
                "lastReconcileAt": fleet_state.get("updatedAt"),
                "state": {**state_summary, "loops": _compact_loops(fleet_state, loop_names or {})},
            }
        )
        if fleet_status_surface is not None:
            status["fleetStatus"] = {k: v for k, v in fleet_status_surface.items() if k != "loops"}
        handoff_block = _compact_handoff(handoff_state, intent_objects or {})
        if handoff_block is not None:
            status["handoff"] = handoff_block
        status.update(build_promotion_status(promotion_state))
    else:
        for key in (
            "fleetId", "loopCount", "skippedLoopCount", "failedLoopCount", "healthStatus", "reasonCodes",
            "traceId", "lastReconcileAt", "state", "fleetStatus", "handoff", "promotionDecision", "promotion",
        ):  # fmt: skip
            if key in prev:
                status[key] = prev[key]
    if blocked_reason is not None:
        ready = ConditionSpec(
            model_conditions.READY, "False", camel_reason(blocked_reason), blocked_message[:1024]
        )
    else:
        ready = ConditionSpec(model_conditions.READY, "True", "FleetReconciled", "fleet pass completed")
    state_for_degraded = fleet_state if fleet_state is not None else _obj(prev.get("state")) or None
    previous_conditions = prev.get("conditions") if isinstance(prev.get("conditions"), list) else None
    status.update(summarize_reasons(status))
    status["conditions"] = build_conditions(
        previous_conditions,
        [ready, _degraded_condition(state_for_degraded)],
        generation=generation,
        now=now,
    )
    return status


def build_fleet_policy_status(
    *,
    previous: Mapping[str, Any] | None,
    generation: int,
    now: dt.datetime,
    mode: str,
    canary_percent: int,
    manual_pause: bool,
    governance_posture: str | None,
    policy_state: Mapping[str, Any] | None = None,
    governance: Mapping[str, Any] | None = None,
    blocked_reason: str | None = None,
    blocked_message: str = "",
) -> JsonObject:
    """The FleetPolicy status: effective rollout (re-based on the spec generation), policy summary.

    ``policyState`` mirrors policy-state.json without the candidate list (it grows with the
    fleet; candidates are in the journal and summarised in the Fleet's status).
    """
    prev = dict(previous or {})
    effective = _obj(prev.get("effectiveRollout"))
    if effective.get("basedOnGeneration") != generation:
        effective = {
            "canaryPercent": canary_percent,
            "manualPause": manual_pause,
            "basedOnGeneration": generation,
            "changedAt": format_ts(now),
        }
    status: JsonObject = {
        "observedGeneration": generation,
        "mode": mode,
        "effectiveRollout": dict(effective),
    }
    if governance_posture is not None:
        status["governancePosture"] = governance_posture
    if policy_state is not None:
        summary = {k: v for k, v in policy_state.items() if k != "candidates"}
        status["policyState"] = summary
        status["reasonCodes"] = list(policy_state.get("reasonCodes") or [])
        pause = _obj(_obj(_obj(policy_state.get("autonomous")).get("rollout")).get("pause"))
        status["pause"] = dict(pause) or None
        status["lastEvaluatedAt"] = policy_state.get("updatedAt")
    else:
        for key in ("policyState", "reasonCodes", "pause", "lastEvaluatedAt"):
            if key in prev:
                status[key] = prev[key]
    if governance is not None:
        status["governance"] = dict(governance)
    elif "governance" in prev:
        status["governance"] = prev["governance"]
    if blocked_reason is not None:
        ready = ConditionSpec(
            model_conditions.READY, "False", camel_reason(blocked_reason), blocked_message[:1024]
        )
    elif "policyState" not in status:
        ready = ConditionSpec(
            model_conditions.READY, "False", "AwaitingFleetPass", "no Fleet has evaluated this policy yet"
        )
    else:
        ready = ConditionSpec(model_conditions.READY, "True", "PolicyEvaluated", "policy evaluated")
    previous_conditions = prev.get("conditions") if isinstance(prev.get("conditions"), list) else None
    status.update(summarize_reasons(status))
    status["conditions"] = build_conditions(previous_conditions, [ready], generation=generation, now=now)
    return {k: v for k, v in status.items() if v is not None}


def compute_fleet_events(
    previous: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    *,
    created_intents: Sequence[str] = (),
    autonomous_outcomes: Sequence[tuple[str, str]] = (),
) -> list[FleetEvent]:
    """Events for transitions only: rollup status, Ready, new intents, autonomous outcomes, auto-pause."""
    events: list[FleetEvent] = []
    old_health, new_health = _obj(previous).get("healthStatus"), new.get("healthStatus")
    if new_health is not None and new_health != old_health:
        kind = "Normal" if new_health == "success" else "Warning"
        codes = ", ".join(str(c) for c in new.get("reasonCodes") or []) or "none"
        events.append(
            FleetEvent(kind, "FleetStatusChanged", f"{old_health or 'none'} -> {new_health} ({codes})")
        )
    old_ready = find_condition(_obj(previous).get("conditions"), model_conditions.READY) or {}
    new_ready = find_condition(new.get("conditions"), model_conditions.READY) or {}
    if (old_ready.get("status"), old_ready.get("reason")) != (
        new_ready.get("status"),
        new_ready.get("reason"),
    ) and new_ready.get("status") == "False":
        events.append(FleetEvent("Warning", str(new_ready.get("reason")), str(new_ready.get("message", ""))))
    for name in created_intents:
        events.append(FleetEvent("Normal", "IntentProposed", f"HandoffIntent {name} proposed"))
    for name, outcome in autonomous_outcomes:
        kind = "Normal" if outcome in handoff_intent_resource.FINAL_OUTCOMES else "Warning"
        events.append(FleetEvent(kind, "AutonomousExecution", f"HandoffIntent {name}: {outcome}"))
    old_pause = _obj(_obj(_obj(_obj(previous).get("fleetStatus")).get("autonomous")).get("rollout"))
    new_pause = _obj(_obj(_obj(new.get("fleetStatus")).get("autonomous")).get("rollout"))
    was = _obj(old_pause.get("state")).get("autoPauseActive") is True
    now_active = _obj(new_pause.get("state")).get("autoPauseActive") is True
    if now_active and not was:
        events.append(FleetEvent("Warning", "AutoPauseActivated", "autonomous rollout auto-paused"))
    elif was and not now_active and new_pause:
        events.append(FleetEvent("Normal", "AutoPauseCleared", "autonomous rollout auto-pause cleared"))
    return events
