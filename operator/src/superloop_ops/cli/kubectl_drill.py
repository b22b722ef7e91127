"""``kubectl superloop drill record``: record an incident drill's outcome as promotion evidence.

The runbook's step 5 of the promotion gates: after running the three incident drills, the
operator of the fleet records their outcomes, and the ``drill_recency`` gate reads them. In a
cluster the evidence lives in the ConfigMap the FleetPolicy names
(``spec.promotion.drillEvidenceConfigMapRef``); this command creates it or merges one drill into
it (``core.promotion.drill_records``). It writes with the *user's* credentials: the operator only
reads that ConfigMap. Concurrent recorders cannot lose each other's entries: the update carries
the ConfigMap's ``resourceVersion`` and is redone on a conflict.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.promotion import drill_records
from superloop_ops.core.promotion.promotion_gates import REQUIRED_DRILLS
from superloop_ops.errors import ContractError, OperatorError
from superloop_ops.models.fleet_policy import DEFAULT_DRILL_EVIDENCE_KEY

__all__ = [
    "DrillCluster",
    "WriteConflictError",
    "add_parser",
    "find_evidence_config_map",
    "run",
]

_ATTEMPTS = 5


class WriteConflictError(OperatorError):
    """The ConfigMap changed (or appeared) between our read and our write."""


class DrillCluster(Protocol):
    """The API calls the command makes (``kubectl_plugin._Cluster`` implements them)."""

    namespace: str

    def get(self, plural: str, name: str) -> JsonObject: ...

    def fetch_config_map(self, name: str) -> tuple[dict[str, str], str] | None:
        """``(data, resourceVersion)``, or None when the ConfigMap does not exist."""
        ...

    def create_config_map(self, name: str, data: Mapping[str, str]) -> None: ...

    def patch_config_map(self, name: str, data: Mapping[str, str], resource_version: str) -> None: ...


def add_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register ``drill record`` on the plugin's subparsers (``parents``: the kubectl flags)."""
    drill = sub.add_parser(
        "drill", parents=list(parents), help="record incident drill evidence for the promotion gates"
    )
    actions = drill.add_subparsers(dest="drill_command", metavar="ACTION", required=True)
    record = actions.add_parser(
        "record",
        parents=list(parents),
        help="record one drill's outcome in the FleetPolicy's drill evidence ConfigMap",
    )
    record.add_argument("--fleet-policy", required=True, help="FleetPolicy naming the evidence ConfigMap")
    record.add_argument("--drill", required=True, choices=REQUIRED_DRILLS)
    record.add_argument("--status", required=True, choices=drill_records.DRILL_STATUSES)
    record.add_argument(
        "--completed-at", default=None, help="when the drill completed (YYYY-MM-DDTHH:MM:SSZ; default now)"
    )


def find_evidence_config_map(policy: Mapping[str, Any]) -> tuple[str, str]:
    """``(name, key)`` of the drill evidence ConfigMap a FleetPolicy names; ContractError if none."""
    spec = policy.get("spec")
    promotion = spec.get("promotion") if isinstance(spec, Mapping) else None
    ref = promotion.get("drillEvidenceConfigMapRef") if isinstance(promotion, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    meta = policy.get("metadata")
    policy_name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ContractError(
            f"FleetPolicy {policy_name} names no drill evidence ConfigMap;"
            " set spec.promotion.drillEvidenceConfigMapRef.name"
        )
    key = ref.get("key") if isinstance(ref, Mapping) else None
    return name, key if isinstance(key, str) and key else DEFAULT_DRILL_EVIDENCE_KEY


def run(cluster: DrillCluster, args: argparse.Namespace, now: dt.datetime) -> int:
    """Merge one drill into the evidence ConfigMap (create it when absent) and say what was done."""
    record = drill_records.DrillRecord(
        drill_id=args.drill, status=args.status, completed_at=args.completed_at or format_ts(now)
    )
    name, key = find_evidence_config_map(cluster.get("fleetpolicies", args.fleet_policy))
    where = f"ConfigMap {cluster.namespace}/{name} key {key}"
    for _ in range(_ATTEMPTS):
        found = cluster.fetch_config_map(name)
        existing = found[0].get(key) if found is not None else None
        document = drill_records.build_drill_document(existing, record, now=now, where=where)
        text = drill_records.format_drill_document(document)
        try:
            if found is None:
                cluster.create_config_map(name, {key: text})
            else:
                cluster.patch_config_map(name, {key: text}, found[1])
        except WriteConflictError:
            continue
        print(
            f"configmap/{name} ({key}): drill {record.drill_id} recorded as {record.status}"
            f" (completedAt {record.completed_at}) for fleetpolicy/{args.fleet_policy}"
        )
        return 0
    raise OperatorError(f"{where} kept changing during {_ATTEMPTS} attempts; try again")
