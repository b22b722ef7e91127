"""FleetPolicy controller, pure part: the policy's desired status.

The effective rollout is re-based on the spec when the generation changes (a PromotionApply
moves it in between); the policy state of the last fleet pass is mirrored without its candidate
list; the Ready condition says whether a Fleet has evaluated the policy yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.common.status_conditions import (
    ConditionSpec,
    build_conditions,
    camel_reason,
    summarize_reasons,
)
from superloop_ops.models import conditions as model_conditions

__all__ = ["build_fleet_policy_status"]


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
