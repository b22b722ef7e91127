"""FleetPolicy glue: the policy's governance posture and status, and the one writer of that status.

Every write of a FleetPolicy status goes through this module, by ``controllers.status_writes``:
the posture after a policy change or a fleet pass (``write_policy_status``, desired status from
``core.fleet.fleet_policy_resource.build_fleet_policy_status``) and a PromotionApply's move of the
effective rollout (``write_effective_rollout``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from superloop_ops.clock import Clock
from superloop_ops.controllers.k8s_events import post_events
from superloop_ops.controllers.status_writes import write_status
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.fleet import fleet_policy_resource, fleet_surface, suppressions
from superloop_ops.errors import InvalidSpecError
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.k8s.fleet_edge import FleetEdge
from superloop_ops.models.fleet_policy import FleetPolicy, RolloutSettings

log = logging.getLogger(__name__)

__all__ = [
    "compute_governance_posture",
    "list_referencing_fleets",
    "policy_ref",
    "write_effective_rollout",
    "write_policy_status",
]


def policy_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
    return ObjectRef(kind="FleetPolicy", plural="fleetpolicies", namespace=namespace, name=name, uid=uid)


def compute_governance_posture(policy: FleetPolicy, now: dt.datetime) -> JsonObject:
    """The governance posture block of a FleetPolicy (reporting only)."""
    governance = policy.spec.autonomous.governance
    doc = governance.model_dump(mode="json", by_alias=True, exclude_none=True) if governance else {}
    return fleet_surface.compute_governance_posture(doc, policy.spec.mode, True, now)


def build_policy_status(
    body: Mapping[str, Any],
    now: dt.datetime,
    policy_state: Mapping[str, Any] | None,
    blocked: tuple[str, str] | None,
    shadow: Mapping[str, Any] | None = None,
) -> JsonObject:
    """The desired status of one FleetPolicy object (an unparseable spec blocks with the model's defaults)."""
    previous = dict(body.get("status") or {})
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    try:
        policy: FleetPolicy | None = FleetPolicy.from_body(body)
    except InvalidSpecError as exc:
        blocked = ("invalid_spec", str(exc))
        policy = None
    blocked_reason, blocked_message = blocked if blocked else (None, "")
    if policy is None:
        defaults = RolloutSettings()
        return fleet_policy_resource.build_fleet_policy_status(
            previous=previous, generation=generation, now=now, mode=str(previous.get("mode") or "advisory"),
            canary_percent=defaults.canary_percent, manual_pause=defaults.pause.manual,
            governance_posture=None,
            blocked_reason=blocked_reason, blocked_message=blocked_message,
        )  # fmt: skip
    posture = compute_governance_posture(policy, now)
    rollout = policy.spec.autonomous.rollout
    return fleet_policy_resource.build_fleet_policy_status(
        previous=previous, generation=generation, now=now, mode=policy.spec.mode,
        canary_percent=rollout.canary_percent, manual_pause=rollout.pause.manual,
        governance_posture=str(posture.get("posture")), policy_state=policy_state, governance=posture,
        blocked_reason=blocked_reason, blocked_message=blocked_message, shadow=shadow,
        suppressions=_suppression_status(policy, now, policy_state, previous),
    )  # fmt: skip


def _suppression_status(
    policy: FleetPolicy, now: dt.datetime, policy_state: Mapping[str, Any] | None, previous: Mapping[str, Any]
) -> list[JsonObject]:
    """Each suppression's state now (from the spec) and what it hid (the pass's report or the status)."""
    report = ((policy_state or {}).get("suppressionState") or {}).get("entries")
    counted = report if policy_state is not None else previous.get("suppressions")
    spec = policy.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return suppressions.build_suppression_status(spec, now, counted if isinstance(counted, list) else None)


def write_policy_status(
    edge: FleetEdge,
    clock: Clock,
    namespace: str,
    policy_name: str,
    policy_state: Mapping[str, Any] | None,
    blocked: tuple[str, str] | None = None,
    *,
    shadow: Mapping[str, Any] | None = None,
) -> None:
    """Compute and write the posture of one FleetPolicy (skipped when unchanged; gone is a no-op)."""
    ref = policy_ref(namespace, policy_name)
    body = edge.fetch_object(ref)
    if body is None:
        return
    previous = dict(body.get("status") or {})
    new = build_policy_status(body, clock.now(), policy_state, blocked, shadow)
    if write_status(edge, ref, previous, new):
        events = suppressions.compute_suppression_events(
            previous.get("suppressions"), new.get("suppressions") or []
        )
        post_events(edge, ref, events, log)


def write_effective_rollout(
    edge: FleetEdge, ref: ObjectRef, previous: Mapping[str, Any] | None, effective: Mapping[str, Any]
) -> None:
    """A PromotionApply's move of the effective rollout (the other status fields are left alone)."""
    prior = dict(previous or {})
    write_status(edge, ref, prior, prior | {"effectiveRollout": dict(effective)})


def list_referencing_fleets(edge: FleetEdge, namespace: str, policy_name: str) -> list[str]:
    """The names of the Fleets whose ``policyRef`` names this policy."""
    fleets = edge.list_objects(ObjectRef(kind="Fleet", plural="fleets", namespace=namespace, name=""))
    return [
        str((f.get("metadata") or {}).get("name"))
        for f in fleets
        if ((f.get("spec") or {}).get("policyRef") or {}).get("name") == policy_name
    ]
