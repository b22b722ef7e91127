"""The objects of one fleet pass: its dependencies, the references and metadata of the Fleet's
objects (Loops, HandoffIntents) and the Fleet's journal paths.

Where the journal lives: ``<state>/<namespace>`` is the "repository" (as for Loops), so the
per-loop drill-down pointers of the fleet state point at the Loop controller's journal
(``.superloop/ops-manager/<loopId>/...``). The fleet files of one Fleet live under
``.superloop/ops-manager/fleet/<fleet name>/`` (the reference layout below one directory per
Fleet, since a namespace may hold several Fleets).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from superloop_ops.clock import Clock
from superloop_ops.core.fleet.fleet_members import LoopMember
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.k8s.fleet_edge import FleetEdge
from superloop_ops.metrics import OperatorMetrics
from superloop_ops.models.loop import Loop
from superloop_ops.settings import Settings

__all__ = [
    "FLEET_MEMBERS_INDEX",
    "FleetPassDeps",
    "MembersByNamespace",
    "ValidatedRegistry",
    "build_fleet_paths",
    "fleet_ref",
    "intent_ref",
    "is_owned_by",
    "loop_ref",
    "object_meta",
    "parse_loop_spec",
]


MembersByNamespace = Mapping[str, Iterable[LoopMember]]
"""The Loops the watch has seen, by namespace (a kopf ``Index``: namespace -> its Loops' members)."""

FLEET_MEMBERS_INDEX = "fleet_loop_members"
"""The kopf index of Loop members (``handlers.fleet``); handlers find it under this keyword."""


@dataclasses.dataclass(frozen=True)
class ValidatedRegistry:
    """A Fleet's last registry document as written to its journal, and as validated, and when."""

    document: Mapping[str, Any]
    registry: dict[str, Any]
    """Read, never changed, by the stages of a pass (passes share it)."""
    validated_at: dt.datetime

    def fresh(self, now: dt.datetime, settings: Settings) -> bool:
        """Validated less than ``fleet_recheck_seconds`` ago (rules with a clock are re-checked then)."""
        return (now - self.validated_at).total_seconds() < settings.fleet_recheck_seconds


@dataclasses.dataclass
class FleetPassDeps:
    """Everything a pass needs from its surroundings (the handler passes the operator context's)."""

    edge: FleetEdge
    settings: Settings
    clock: Clock
    metrics: OperatorMetrics
    lock_for: Callable[[str], Any]
    sleep: Callable[[float], None] = time.sleep
    runtime_command: tuple[str, ...] | None = None
    inflight: set[str] = dataclasses.field(default_factory=set)
    members: MembersByNamespace = dataclasses.field(default_factory=dict)
    """The Loops the watch has seen, by namespace (the operator's kopf index, ``FLEET_MEMBERS_INDEX``):
    a fleet pass reads its members here, never by a LIST."""
    last_inputs: dict[str, tuple[Any, dt.datetime]] = dataclasses.field(default_factory=dict)
    """Per Fleet: what its last full pass read, and when (``fleet_controller`` skips a pass that
    would read the same)."""
    last_registry: dict[str, ValidatedRegistry] = dataclasses.field(default_factory=dict)
    """Per Fleet: its last registry (the journal's file is rewritten and validated only when it changed)."""


def fleet_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
    return ObjectRef(kind="Fleet", plural="fleets", namespace=namespace, name=name, uid=uid)


def loop_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
    return ObjectRef(kind="Loop", plural="loops", namespace=namespace, name=name, uid=uid)


def intent_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
    return ObjectRef(kind="HandoffIntent", plural="handoffintents", namespace=namespace, name=name, uid=uid)


def build_fleet_paths(settings: Settings, namespace: str, fleet_name: str) -> fleet_commands.FleetPaths:
    """The journal files of one Fleet (reference layout below ``ops-manager/fleet/<name>/``)."""
    repo = settings.namespace_state_dir(namespace).absolute()
    base = repo / ".superloop" / "ops-manager" / "fleet" / fleet_name
    tel = base / "telemetry"
    return fleet_commands.FleetPaths.for_repo(
        repo,
        registry_file=base / "registry.v1.json",
        fleet_state_file=base / "state.json",
        fleet_telemetry_file=tel / "reconcile.jsonl",
        policy_state_file=base / "policy-state.json",
        policy_telemetry_file=tel / "policy.jsonl",
        policy_history_file=tel / "policy-history.jsonl",
        governance_audit_file=tel / "policy-governance.jsonl",
        handoff_state_file=base / "handoff-state.json",
        handoff_telemetry_file=tel / "handoff.jsonl",
    )


def object_meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def parse_loop_spec(body: Mapping[str, Any]) -> Loop:
    """The Loop's spec (its status is the Loop controller's business, read as plain data)."""
    return Loop.from_body({key: value for key, value in body.items() if key != "status"})


def is_owned_by(body: Mapping[str, Any], uid: str) -> bool:
    refs = object_meta(body).get("ownerReferences") or []
    return any(isinstance(r, Mapping) and r.get("uid") == uid and r.get("kind") == "Fleet" for r in refs)
