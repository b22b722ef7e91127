"""Owned-Loop materialisation and the Loop index of a fleet pass.

Inline registry entries become Loops owned by the Fleet (``ensure_owned_loops``); every
declared Loop's status is read once into a ``LoopIndex``. How the rollup gets per-loop results:
the Loop controller reconciles each Loop at its own cadence; the fleet pass never reconciles a
loop a second time. It runs the fleet engine's fan-out with a *reader* as the loop-level
reconciler (``build_status_reader``): each "reconcile" returns what the Loop's status says about
its last pass (``core.fleet.fleet_resource.compute_loop_outcome``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping

from superloop_ops.controllers.fleet_objects import (
    FleetPassDeps,
    is_owned_by,
    loop_ref,
    object_meta,
    parse_loop_spec,
)
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.fleet import fleet_resource, owned_names, rollup
from superloop_ops.core.loop import remediation
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.errors import InvalidSpecError
from superloop_ops.k8s.fleet_edge import AlreadyExistsError
from superloop_ops.models.fleet import Fleet
from superloop_ops.models.loop import LoopSpec

__all__ = [
    "LoopIndex",
    "build_status_reader",
    "ensure_owned_loops",
    "index_loops",
]


# ---------------------------------------------------------------------------------------------
# owned Loops


def ensure_owned_loops(deps: FleetPassDeps, fleet: Fleet, namespace: str, name: str, uid: str) -> None:
    """Create missing owned Loops, replace changed ones, delete the ones no longer declared.

    The chart's admission policy forbids the operator to write any spec, so a changed inline
    entry is applied as delete + create (the journal is keyed by loopId and survives).
    """
    desired: dict[str, JsonObject] = {}
    for entry in fleet.spec.loops:
        if entry.loop_ref is not None:
            continue
        dumped = entry.model_dump(mode="json", by_alias=True, exclude_none=True)
        manifest = fleet_resource.build_owned_loop_manifest(
            fleet_name=name,
            fleet_uid=uid,
            entry=dumped,
            reconcile_interval_seconds=fleet.spec.reconcile_interval_seconds,
            max_events=fleet.spec.max_events,
        )
        if not entry.enabled:
            manifest["spec"]["suspend"] = True
            manifest["metadata"]["annotations"][owned_names.SPEC_HASH_ANNOTATION] = (
                owned_names.compute_spec_hash(manifest["spec"])
            )
        desired[manifest["metadata"]["name"]] = manifest
    selector = f"{owned_names.FLEET_LABEL}={owned_names.compute_dns_name(name)}"
    existing = {
        str(object_meta(body).get("name")): body
        for body in deps.edge.list_labelled(loop_ref(namespace, ""), selector)
        if is_owned_by(body, uid)
    }
    for loop_name, body in existing.items():
        want = desired.get(loop_name)
        have_hash = (object_meta(body).get("annotations") or {}).get(owned_names.SPEC_HASH_ANNOTATION)
        if want is None or have_hash != want["metadata"]["annotations"][owned_names.SPEC_HASH_ANNOTATION]:
            deps.edge.delete_object(
                loop_ref(namespace, loop_name), uid=str(object_meta(body).get("uid") or "") or None
            )
            if want is not None:
                with contextlib.suppress(AlreadyExistsError):  # still terminating: next pass creates it
                    deps.edge.create_object(loop_ref(namespace, loop_name), want)
    for loop_name, manifest in desired.items():
        if loop_name in existing:
            continue
        try:
            deps.edge.create_object(loop_ref(namespace, loop_name), manifest)
        except AlreadyExistsError as exc:
            raise InvalidSpecError(
                f"Loop {loop_name} exists and is not owned by Fleet {name}; use loopRef to adopt it"
            ) from exc


# ---------------------------------------------------------------------------------------------
# reading the Loops


@dataclasses.dataclass(frozen=True)
class LoopIndex:
    by_id: dict[str, fleet_resource.LoopBinding]
    referenced: dict[str, LoopSpec]
    missing: list[str]


def index_loops(deps: FleetPassDeps, fleet: Fleet, namespace: str, name: str) -> LoopIndex:
    bodies = {str(object_meta(b).get("name")): b for b in deps.edge.list_objects(loop_ref(namespace, ""))}
    by_id: dict[str, fleet_resource.LoopBinding] = {}
    referenced: dict[str, LoopSpec] = {}
    missing: list[str] = []
    for entry in fleet.spec.loops:
        loop_name = (
            entry.loop_ref.name
            if entry.loop_ref is not None
            else owned_names.compute_loop_name(name, entry.loop_id)
        )
        body = bodies.get(loop_name)
        if body is None:
            missing.append(loop_name)
            continue
        try:
            loop = parse_loop_spec(body)
        except InvalidSpecError:
            missing.append(loop_name)
            continue
        if entry.loop_ref is not None:
            referenced[loop_name] = loop.spec
        status = body.get("status")
        by_id[entry.loop_id] = fleet_resource.LoopBinding(
            loop_id=entry.loop_id,
            name=loop_name,
            status=status if isinstance(status, Mapping) else None,
            suspended=loop.spec.suspend,
        )
    return LoopIndex(by_id=by_id, referenced=referenced, missing=missing)


def build_status_reader(index: LoopIndex) -> fleet_commands.LoopReconciler:
    def read(request: fleet_commands.LoopReconcileRequest) -> rollup.LoopRunOutcome:
        binding = index.by_id.get(request.loop_id)
        outcome = fleet_resource.compute_loop_outcome(binding.status if binding else None)
        if outcome is None:
            return rollup.LoopRunOutcome(exit_code=1, output="Loop has no reconcile result yet")
        # the Loop's open remediation's trace id becomes the candidate's (issue 15)
        trace = remediation.find_open_trace(binding.status if binding else None)
        return dataclasses.replace(outcome, trace_id=trace) if trace else outcome

    return read
