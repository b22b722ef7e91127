"""Owned-Loop materialisation and the Loop index of a fleet pass.

Inline registry entries become Loops owned by the Fleet (``ensure_owned_loops``); every
member Loop is bound once into a ``LoopIndex`` from the members the Loop watch keeps
(``core.fleet.fleet_members``), not from a LIST. How the rollup gets per-loop results:
the Loop controller reconciles each Loop at its own cadence; the fleet pass never reconciles a
loop a second time. It runs the fleet engine's fan-out with a *reader* as the loop-level
reconciler (``build_status_reader``): each "reconcile" returns what the Loop's status says about
its last pass (``core.fleet.fleet_resource.compute_loop_outcome``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping

from superloop_ops.controllers.fleet_objects import FleetPassDeps, is_owned_by, loop_ref
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.fleet import fleet_resource, owned_names, rollup
from superloop_ops.core.fleet.fleet_members import LoopMember
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.errors import InvalidSpecError
from superloop_ops.k8s.fleet_edge import AlreadyExistsError
from superloop_ops.models.fleet import Fleet, FleetLoopEntry

__all__ = [
    "LoopIndex",
    "build_status_reader",
    "ensure_owned_loops",
    "index_loops",
]


# ---------------------------------------------------------------------------------------------
# owned Loops


def ensure_owned_loops(
    deps: FleetPassDeps, fleet: Fleet, namespace: str, name: str, uid: str, members: Mapping[str, LoopMember]
) -> None:
    """Create missing owned Loops, replace changed ones, delete the ones no longer declared.

    The owned Loops are read from the watch-kept ``members`` (no LIST): nothing is sent when they
    match the Fleet. The chart's admission policy forbids the operator to write any spec, so a
    changed inline entry is applied as delete + create (the journal is keyed by loopId and
    survives). A create refused because the Loop exists asks the apiserver whose it is (the
    watch may not have shown a Loop this Fleet created a moment ago).
    """
    desired = _desired_owned_loops(fleet, name, uid)
    existing = {loop_name: m for loop_name, m in members.items() if uid in m.owner_uids}
    for loop_name, member in existing.items():
        want = desired.get(loop_name)
        if (
            want is None
            or member.spec_hash != want["metadata"]["annotations"][owned_names.SPEC_HASH_ANNOTATION]
        ):
            deps.edge.delete_object(loop_ref(namespace, loop_name), uid=member.uid or None)
            if want is not None:
                with contextlib.suppress(AlreadyExistsError):  # still terminating: next pass creates it
                    deps.edge.create_object(loop_ref(namespace, loop_name), want)
    for loop_name, manifest in desired.items():
        if loop_name not in existing:
            _create_owned_loop(deps, namespace, name, uid, loop_name, manifest)


def _desired_owned_loops(fleet: Fleet, name: str, uid: str) -> dict[str, JsonObject]:
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
    return desired


def _create_owned_loop(
    deps: FleetPassDeps, namespace: str, name: str, uid: str, loop_name: str, manifest: JsonObject
) -> None:
    try:
        deps.edge.create_object(loop_ref(namespace, loop_name), manifest)
    except AlreadyExistsError as exc:
        found = deps.edge.fetch_object(loop_ref(namespace, loop_name))
        if found is not None and is_owned_by(found, uid):
            return  # ours, not seen by the watch yet
        raise InvalidSpecError(
            f"Loop {loop_name} exists and is not owned by Fleet {name}; use loopRef to adopt it"
        ) from exc


# ---------------------------------------------------------------------------------------------
# reading the Loops


@dataclasses.dataclass(frozen=True)
class LoopIndex:
    by_id: dict[str, fleet_resource.LoopBinding]
    referenced: dict[str, LoopMember]
    missing: list[str]


def index_loops(entries: list[FleetLoopEntry], name: str, members: Mapping[str, LoopMember]) -> LoopIndex:
    """Bind each registry entry to its Loop among the watch-kept members (no API call)."""
    by_id: dict[str, fleet_resource.LoopBinding] = {}
    referenced: dict[str, LoopMember] = {}
    missing: list[str] = []
    for entry in entries:
        loop_name = (
            entry.loop_ref.name
            if entry.loop_ref is not None
            else owned_names.compute_loop_name(name, entry.loop_id)
        )
        member = members.get(loop_name)
        if member is None or member.loop_id is None:
            missing.append(loop_name)
            continue
        if entry.loop_ref is not None:
            referenced[loop_name] = member
        by_id[entry.loop_id] = fleet_resource.LoopBinding(
            loop_id=entry.loop_id, name=loop_name, outcome=member.outcome, suspended=member.suspended,
            last_reconcile_at=member.last_reconcile_at,
        )
    return LoopIndex(by_id=by_id, referenced=referenced, missing=missing)


def build_status_reader(index: LoopIndex) -> fleet_commands.LoopReconciler:
    def read(request: fleet_commands.LoopReconcileRequest) -> rollup.LoopRunOutcome:
        binding = index.by_id.get(request.loop_id)
        outcome = binding.outcome if binding else None
        if outcome is None:
            return rollup.LoopRunOutcome(exit_code=1, output="Loop has no reconcile result yet")
        return outcome  # carries the Loop's open remediation's trace id (issue 15; ``fleet_members``)

    return read
