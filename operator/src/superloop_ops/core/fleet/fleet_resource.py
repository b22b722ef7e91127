"""Fleet controller, pure part: owned Loop manifests, Loop-status reading, the Fleet status, Events.

The Fleet controller never reconciles a loop itself: the Loop controller does (one pass per
Loop, at the Loop's own cadence). A fleet pass *reads* each Loop's status and turns it into the
outcome the fleet fan-out expects from a loop-level reconcile (``compute_loop_outcome``), so
the fleet engine builds the reference's fleet state, policy and handoff documents unchanged.
Names and labels of owned objects: ``core.fleet.owned_names``; the FleetPolicy status:
``core.fleet.fleet_policy_resource``; the HandoffIntents a Fleet proposes:
``core.handoff.handoff_intent_resource``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.common.status_conditions import (
    ConditionSpec,
    build_conditions,
    camel_reason,
    find_condition,
    summarize_reasons,
)
from superloop_ops.core.fleet.owned_names import (
    API_VERSION,
    FLEET_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    SPEC_HASH_ANNOTATION,
    build_owner_reference,
    compute_dns_name,
    compute_loop_name,
    compute_spec_hash,
)
from superloop_ops.core.fleet.rollup import LoopRunOutcome
from superloop_ops.core.handoff import handoff_intent_resource
from superloop_ops.models import conditions as model_conditions

__all__ = [
    "FleetEvent",
    "LoopBinding",
    "build_fleet_status",
    "build_owned_loop_manifest",
    "build_promotion_status",
    "compute_fleet_events",
    "compute_loop_outcome",
    "snake_reason",
]

_CAMEL_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_LISTED_INTENTS = 100
_MAX_LISTED_LOOPS = 100
"""A Fleet status lists at most this many loop rows (problem rows first), ids per exception list
and loop trace ids; the counts say how many there are, the journal has them all (issue 12)."""


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
        "apiVersion": API_VERSION,
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
    """Which Loop object stands for a registry loop id, and the outcome its status reports
    (``compute_loop_outcome``: None until the Loop's first pass)."""

    loop_id: str
    name: str
    outcome: LoopRunOutcome | None
    suspended: bool = False
    last_reconcile_at: str | None = None


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


def _is_problem(result: Mapping[str, Any]) -> bool:
    return result.get("status") != "success" or result.get("healthStatus") not in (None, "healthy")


def _listed_results(state: Mapping[str, Any] | None) -> tuple[list[Mapping[str, Any]], int]:
    """The results a Fleet status lists, in fleet order: all of them up to ``_MAX_LISTED_LOOPS``,
    else the problem rows first; and how many were left out."""
    results = state.get("results") if state else None
    every = [r for r in (results if isinstance(results, list) else []) if isinstance(r, Mapping)]
    if len(every) <= _MAX_LISTED_LOOPS:
        return every, 0
    problems = [i for i, r in enumerate(every) if _is_problem(r)][:_MAX_LISTED_LOOPS]
    rest = [i for i, r in enumerate(every) if not _is_problem(r)][: _MAX_LISTED_LOOPS - len(problems)]
    return [every[i] for i in sorted(problems + rest)], len(every) - _MAX_LISTED_LOOPS


def _compact_loops(results: list[Mapping[str, Any]], names: Mapping[str, str]) -> list[JsonObject]:
    rows: list[JsonObject] = []
    for result in results:
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


def _bounded_surface(surface: Mapping[str, Any]) -> JsonObject:
    """The status surface without its per-loop rows; exception lists and loop trace ids capped
    (``exceptionCounts`` and ``loopTraceIdCount`` say how many there are when capped)."""
    out: JsonObject = {k: v for k, v in surface.items() if k != "loops"}
    exceptions = _obj(surface.get("exceptions"))
    long = {k: len(v) for k, v in exceptions.items() if isinstance(v, list) and len(v) > _MAX_LISTED_LOOPS}
    if long:
        out["exceptions"] = {k: v[:_MAX_LISTED_LOOPS] if k in long else v for k, v in exceptions.items()}
        out["exceptionCounts"] = {k: len(v) for k, v in exceptions.items() if isinstance(v, list)}
    linkage = _obj(surface.get("traceLinkage"))
    traces = linkage.get("loopTraceIds")
    if isinstance(traces, list) and len(traces) > _MAX_LISTED_LOOPS:
        out["traceLinkage"] = {
            **linkage,
            "loopTraceIds": traces[:_MAX_LISTED_LOOPS],
            "loopTraceIdCount": len(traces),
        }
    return out


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


def _with_pacing(block: JsonObject, pacing: Mapping[str, Any] | None) -> JsonObject:
    """The handoff block with its ``pacing`` counts; while intents are deferred, its reason code too."""
    if not pacing:
        return block
    block["pacing"] = dict(pacing)
    code = pacing.get("reasonCode")
    if isinstance(code, str):
        block["reasonCodes"] = sorted({*block["reasonCodes"], code})
    return block


def _deferred_count(handoff: Mapping[str, Any]) -> int:
    count = _obj(handoff.get("pacing")).get("deferredCount")
    return count if isinstance(count, int) else 0


def _ready_message(handoff: Mapping[str, Any]) -> str:
    deferred = _deferred_count(handoff)
    if not deferred:
        return "fleet pass completed"
    cap = _obj(handoff.get("pacing")).get("maxIntentsPerPass")
    return (
        f"fleet pass completed; {deferred} planned HandoffIntents deferred to the following passes"
        f" (FleetPolicy spec.handoff.maxIntentsPerPass {cap})"
    )


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
    handoff_pacing: Mapping[str, Any] | None = None,
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
        listed, omitted = _listed_results(fleet_state)
        if omitted:
            state_summary["omittedLoopRows"] = omitted
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
                "state": {**state_summary, "loops": _compact_loops(listed, loop_names or {})},
            }
        )
        if fleet_status_surface is not None:
            status["fleetStatus"] = _bounded_surface(fleet_status_surface)
        handoff_block = _compact_handoff(handoff_state, intent_objects or {})
        if handoff_block is not None:
            status["handoff"] = _with_pacing(handoff_block, handoff_pacing)
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
        ready = ConditionSpec(
            model_conditions.READY, "True", "FleetReconciled", _ready_message(_obj(status.get("handoff")))
        )
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


def _deferral_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FleetEvent]:
    """An Event when planned intents start waiting for later passes, and one when none wait any more."""
    was, now = _deferred_count(old), _deferred_count(new)
    if now and not was:
        message = _ready_message(new).removeprefix("fleet pass completed; ")
        return [FleetEvent("Normal", "IntentsDeferred", message)]
    if was and not now and new:
        message = "no planned HandoffIntent is deferred any more"
        return [FleetEvent("Normal", "IntentsDeferralCleared", message)]
    return []


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
    events.extend(_deferral_events(_obj(_obj(previous).get("handoff")), _obj(new.get("handoff"))))
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
