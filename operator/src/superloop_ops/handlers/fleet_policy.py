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

from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError, OperatorError
from superloop_ops.handlers import fleet as fleet_handlers
from superloop_ops.handlers.context import OperatorContext, counted_pass, fetch_context
from superloop_ops.k8s.edge import GROUP, VERSION, ObjectRef

__all__ = ["on_policy_change", "reconcile_policy"]

log = logging.getLogger(__name__)


@counted_pass("FleetPolicy")
def reconcile_policy(body: Mapping[str, Any], ctx: OperatorContext, deps: Any) -> list[str]:
    """Write the policy's posture; return the referencing Fleets (which then get a pass)."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    fleet_handlers.write_policy_status(ctx, deps, namespace, name, None)
    fleets = deps.edge.list_objects(ObjectRef(kind="Fleet", plural="fleets", namespace=namespace, name=""))
    return [
        str((f.get("metadata") or {}).get("name"))
        for f in fleets
        if ((f.get("spec") or {}).get("policyRef") or {}).get("name") == name
    ]


@kopf.on.create(GROUP, VERSION, "fleetpolicies")
@kopf.on.resume(GROUP, VERSION, "fleetpolicies")
@kopf.on.update(GROUP, VERSION, "fleetpolicies", field="spec")
def on_policy_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Posture now; the referencing Fleets' passes evaluate the new policy."""
    ctx = fetch_context(memo)
    deps = fleet_handlers.fetch_fleet_deps(memo)
    try:
        fleets = reconcile_policy(dict(body), ctx, deps)
        namespace = str((body.get("metadata") or {}).get("namespace", ""))
        for fleet_name in fleets:
            fleet_body = deps.edge.fetch_object(
                ObjectRef(kind="Fleet", plural="fleets", namespace=namespace, name=fleet_name)
            )
            if fleet_body is not None:
                fleet_handlers.reconcile_fleet(fleet_body, ctx, deps)
    except InvalidSpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except DependencyNotReadyError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    except OperatorError as exc:
        log.warning("FleetPolicy pass failed: %s", exc)
