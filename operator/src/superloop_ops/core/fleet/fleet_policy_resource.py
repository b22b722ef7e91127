"""FleetPolicy controller, pure part: the policy's desired status.

The effective rollout is re-based on the spec when the generation changes (a PromotionApply
moves it in between); the policy state of the last fleet pass is mirrored without its candidate
list; the Ready condition says whether a Fleet has evaluated the policy yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.common.status_conditions import (
    ConditionSpec,
    build_conditions,
    camel_reason,
    summarize_reasons,
)
from superloop_ops.core.fleet.suppressions import compute_suppressions_condition
from superloop_ops.models import conditions as model_conditions

__all__ = ["build_fleet_policy_status", "build_shadow_status"]


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


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
    suppressions: Sequence[Mapping[str, Any]] | None = None,
    shadow: Mapping[str, Any] | None = None,
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
    status["shadow"] = build_shadow_status(shadow) if shadow is not None else prev.get("shadow")
    if governance is not None:
        status["governance"] = dict(governance)
    elif "governance" in prev:
        status["governance"] = prev["governance"]
    desired = _suppression_conditions(status, prev, suppressions)
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
    status["conditions"] = build_conditions(
        previous_conditions, [ready, *desired], generation=generation, now=now
    )
    return {k: v for k, v in status.items() if v is not None}


def _suppression_conditions(
    status: JsonObject, prev: Mapping[str, Any], suppressions: Sequence[Mapping[str, Any]] | None
) -> list[ConditionSpec]:
    """``status.suppressions`` and the SuppressionsExpiring condition (kept as they were without a spec)."""
    if suppressions is None:
        if "suppressions" in prev:
            status["suppressions"] = prev["suppressions"]
        return []
    status["suppressions"] = [dict(entry) for entry in suppressions]
    return [compute_suppressions_condition(suppressions)]


def build_shadow_status(shadow: Mapping[str, Any]) -> JsonObject:
    """``status.shadow``: the ledger's settings and agreement figures (the decisions stay in the journal)."""
    return {
        "updatedAt": shadow.get("updatedAt"),
        "config": dict(_obj(shadow.get("config"))),
        "agreement": dict(_obj(shadow.get("agreement"))),
    }
