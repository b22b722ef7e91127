"""FleetPolicy controller: the policy's own posture, before and between fleet passes.

Policy *evaluation* (candidates, suppressions, cooldowns, caps, kill switch, cohort, pauses)
needs a fleet reconcile, so it runs in the Fleet pass of each Fleet whose ``policyRef`` names
the policy, and that pass mirrors the policy state here. This handler reacts to the policy
object itself: a new generation re-bases the effective rollout on the spec, and the governance
posture is recomputed (an expired ``reviewBy`` shows as ``review_expired`` and blocks
autonomous execution, but never fails this status). It then asks the referencing Fleets for a
pass so the change takes effect without waiting for their interval.

Rules the CRD schema cannot express (suppression keys and rollout scope ids must be declared
loops of the Fleet) are checked by the fleet pass through the registry validator, which
reports them on both objects' Ready condition.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from superloop_ops.controllers import fleet_controller, fleet_objects, fleet_policy_controller
from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError, OperatorError
from superloop_ops.handlers.context import counted_pass, fetch_fleet_deps, runs_fleet_kinds
from superloop_ops.k8s.edge import GROUP, VERSION

__all__ = ["on_policy_change", "reconcile_policy"]

log = logging.getLogger(__name__)


@counted_pass("FleetPolicy")
def reconcile_policy(body: Mapping[str, Any], deps: fleet_objects.FleetPassDeps) -> list[str]:
    """Write the policy's posture; return the referencing Fleets (which then get a pass)."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    fleet_policy_controller.write_policy_status(deps.edge, deps.clock, namespace, name, None)
    return fleet_policy_controller.list_referencing_fleets(deps.edge, namespace, name)


@kopf.on.create(GROUP, VERSION, "fleetpolicies", when=runs_fleet_kinds)
@kopf.on.resume(GROUP, VERSION, "fleetpolicies", when=runs_fleet_kinds)
@kopf.on.update(GROUP, VERSION, "fleetpolicies", field="spec", when=runs_fleet_kinds)
def on_policy_change(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Posture now; the referencing Fleets' passes evaluate the new policy."""
    deps = fetch_fleet_deps(memo, kwargs)
    try:
        fleets = reconcile_policy(dict(body), deps)
        namespace = str((body.get("metadata") or {}).get("namespace", ""))
        for fleet_name in fleets:
            fleet_body = deps.edge.fetch_object(fleet_objects.fleet_ref(namespace, fleet_name))
            if fleet_body is not None:
                fleet_controller.reconcile_fleet(fleet_body, deps)
    except InvalidSpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except DependencyNotReadyError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    except OperatorError as exc:
        log.warning("FleetPolicy pass failed: %s", exc)
