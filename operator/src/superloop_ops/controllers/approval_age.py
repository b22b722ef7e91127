"""The approval age limit in force for one HandoffIntent: its Fleet's FleetPolicy, else the default.

``spec.fleetRef`` -> the Fleet's ``spec.policyRef`` -> ``FleetPolicy spec.approvals.maxAgeSeconds``.
An intent without a Fleet, a Fleet without a policy, or a policy that is missing or does not
parse gets the model's default (``DEFAULT_APPROVAL_MAX_AGE_SECONDS``): an approval never goes
without a limit because a lookup failed.
"""

from __future__ import annotations

from superloop_ops.controllers.fleet_objects import fleet_ref
from superloop_ops.controllers.fleet_policy_controller import policy_ref
from superloop_ops.errors import InvalidSpecError
from superloop_ops.k8s.edge import KubeEdge
from superloop_ops.models.fleet_policy import DEFAULT_APPROVAL_MAX_AGE_SECONDS, FleetPolicy

__all__ = ["fetch_approval_max_age"]


def fetch_approval_max_age(edge: KubeEdge, namespace: str, fleet_name: str | None) -> int:
    """Seconds an approval of this Fleet's intents stays usable."""
    if not fleet_name:
        return DEFAULT_APPROVAL_MAX_AGE_SECONDS
    fleet = edge.fetch_object(fleet_ref(namespace, fleet_name))
    policy_name = (((fleet or {}).get("spec") or {}).get("policyRef") or {}).get("name")
    if not policy_name:
        return DEFAULT_APPROVAL_MAX_AGE_SECONDS
    body = edge.fetch_object(policy_ref(namespace, str(policy_name)))
    if body is None:
        return DEFAULT_APPROVAL_MAX_AGE_SECONDS
    try:
        return FleetPolicy.from_body(body).spec.approvals.max_age_seconds
    except InvalidSpecError:
        return DEFAULT_APPROVAL_MAX_AGE_SECONDS
