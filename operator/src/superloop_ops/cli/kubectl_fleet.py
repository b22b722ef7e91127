"""``kubectl superloop fleet <name>``: a Fleet's posture at a glance, from the objects' status.

Prints one JSON document: the rollup (status, reason codes, counts), the exception buckets,
one row per loop, the intents with their phase and autonomy reasons, and the FleetPolicy's
posture (mode, governance, kill switch, pauses, effective rollout, and in shadow the agreement of
its decisions with people, ``policy.shadow``). Everything comes from the
status the Fleet and FleetPolicy controllers write; nothing is recomputed here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from superloop_ops.core.common.jsonutil import JsonObject

__all__ = ["add_parser", "build_fleet_view", "run"]


class _Reader(Protocol):
    def get(self, plural: str, name: str) -> JsonObject: ...


def add_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register the ``fleet`` subcommand on the plugin's subparsers (``parents``: the kubectl flags)."""
    fleet = sub.add_parser(
        "fleet", parents=list(parents), help="print the posture of a Fleet and its FleetPolicy"
    )
    fleet.add_argument("fleet")
    fleet.add_argument("--compact", action="store_true", help="one-line JSON")


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _condition(status: Mapping[str, Any], cond_type: str) -> JsonObject | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == cond_type:
            return {k: cond.get(k) for k in ("status", "reason", "message")}
    return None


def build_fleet_view(fleet: Mapping[str, Any], policy: Mapping[str, Any] | None) -> JsonObject:
    """The posture document of one Fleet (and its FleetPolicy, when found)."""
    status = _obj(fleet.get("status"))
    surface = _obj(status.get("fleetStatus"))
    handoff = _obj(status.get("handoff"))
    view: JsonObject = {
        "fleet": _obj(fleet.get("metadata")).get("name"),
        "fleetId": status.get("fleetId"),
        "status": status.get("healthStatus"),
        "reasonCodes": list(status.get("reasonCodes") or []),
        "loopCount": status.get("loopCount"),
        "failedLoopCount": status.get("failedLoopCount"),
        "skippedLoopCount": status.get("skippedLoopCount"),
        "lastReconcileAt": status.get("lastReconcileAt"),
        "ready": _condition(status, "Ready"),
        "degraded": _condition(status, "Degraded"),
        "exceptions": dict(_obj(surface.get("exceptions"))),
        "loops": list(_obj(status.get("state")).get("loops") or []),
        "intents": list(handoff.get("intents") or []),
        "handoffReasonCodes": list(handoff.get("reasonCodes") or []),
        "retryGuards": dict(_obj(handoff.get("retryGuards"))),
    }
    if policy is not None:
        pstatus = _obj(policy.get("status"))
        spec = _obj(policy.get("spec"))
        safety = _obj(_obj(spec.get("autonomous")).get("safety"))
        view["policy"] = {
            "name": _obj(policy.get("metadata")).get("name"),
            "mode": pstatus.get("mode") or spec.get("mode"),
            "killSwitch": safety.get("killSwitch") is True,
            "governancePosture": pstatus.get("governancePosture"),
            "governance": dict(_obj(pstatus.get("governance"))),
            "pause": dict(_obj(pstatus.get("pause"))),
            "effectiveRollout": dict(_obj(pstatus.get("effectiveRollout"))),
            "reasonCodes": list(pstatus.get("reasonCodes") or []),
            "ready": _condition(pstatus, "Ready"),
        }
        if isinstance(pstatus.get("shadow"), Mapping):
            view["policy"]["shadow"] = dict(pstatus["shadow"])
    return view


def run(cluster: _Reader, args: argparse.Namespace) -> int:
    """Fetch the Fleet (and its policy) and print the view."""
    fleet = cluster.get("fleets", args.fleet)
    policy_name = _obj(_obj(fleet.get("spec")).get("policyRef")).get("name")
    policy = cluster.get("fleetpolicies", str(policy_name)) if policy_name else None
    view = build_fleet_view(fleet, policy)
    print(json.dumps(view, separators=(",", ":")) if args.compact else json.dumps(view, indent=2))
    return 0
