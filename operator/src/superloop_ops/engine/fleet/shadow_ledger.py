"""The shadow ledger of one fleet: read it, run one pass of the pure rules, write it back.

The ledger (``shadow-state.json`` beside the policy state) holds the shadow decisions still open
or within the rolling window, the person actions already matched, and the last agreement
figures. Each new decision and each resolution is also appended to ``telemetry/shadow.jsonl``.
The rules are ``core.fleet.shadow_agreement``; this module only moves documents.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.fleet import policy_rules, shadow_agreement
from superloop_ops.engine.fleet.fleet_commands import FleetPaths
from superloop_ops.errors import ContractError
from superloop_ops.journal import files

__all__ = [
    "SHADOW_STATE_FILE",
    "ShadowPass",
    "read_shadow_state",
    "run_fleet_shadow",
    "run_shadow_pass",
    "shadow_state_file",
    "shadow_telemetry_file",
]

SHADOW_STATE_FILE = "shadow-state.json"


def shadow_state_file(paths: FleetPaths) -> Path:
    return paths.policy_state_file.parent / SHADOW_STATE_FILE


def shadow_telemetry_file(paths: FleetPaths) -> Path:
    return paths.policy_telemetry_file.parent / "shadow.jsonl"


def read_shadow_state(paths: FleetPaths) -> Mapping[str, Any] | None:
    """The ledger document, None when there is none (or it is not an object)."""
    value = files.read_json(shadow_state_file(paths))
    return value if isinstance(value, Mapping) else None


@dataclasses.dataclass(frozen=True)
class ShadowPass:
    """The ledger after this pass and what changed in it (the metrics count the resolutions)."""

    state: JsonObject
    new_rows: list[JsonObject]
    resolved_rows: list[JsonObject]


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _has_shadow_decisions(policy_state: Mapping[str, Any]) -> bool:
    if policy_state.get("mode") == policy_rules.SHADOW:
        return True
    candidates = policy_state.get("candidates")
    return any(
        isinstance(c, Mapping) and isinstance((c.get("autonomous") or {}).get("shadow"), Mapping)
        for c in (candidates if isinstance(candidates, list) else [])
    )


def run_shadow_pass(
    paths: FleetPaths,
    registry: Mapping[str, Any],
    policy_state: Mapping[str, Any],
    intents: Iterable[Mapping[str, Any]],
    names_to_ids: Mapping[str, str],
    now: dt.datetime,
) -> ShadowPass | None:
    """Record this pass's shadow decisions and match the open ones to people's actions.

    Runs in shadow mode, in guarded_auto with a shadow block (the loops the canary leaves out),
    and after either while a ledger exists (open decisions keep resolving, the figures keep
    rolling). None when there is nothing to keep.
    """
    prior = read_shadow_state(paths)
    if prior is None and not _has_shadow_decisions(policy_state):
        return None
    config = shadow_agreement.ShadowConfig.read(registry.get("policy"))
    fleet_id = str(policy_state.get("fleetId") or registry.get("fleetId") or "default")
    update = shadow_agreement.update_ledger(
        decisions=[d for d in _list((prior or {}).get("decisions")) if isinstance(d, Mapping)],
        consumed=[str(c) for c in _list((prior or {}).get("consumedActions"))],
        policy_state=policy_state,
        actions=shadow_agreement.read_human_actions(intents, names_to_ids, now),
        config=config,
        fleet_id=fleet_id,
        now=now,
    )
    state: JsonObject = {
        "schemaVersion": shadow_agreement.STATE_SCHEMA,
        "updatedAt": format_ts(now),
        "fleetId": fleet_id,
        "mode": policy_state.get("mode"),
        "config": config.to_json(),
        "agreement": shadow_agreement.compute_agreement(update.decisions, config, now),
        "decisions": update.decisions,
        "consumedActions": update.consumed,
    }
    rows = [*update.new_rows, *update.resolved_rows]
    if rows:
        files.append_jsonl(shadow_telemetry_file(paths), rows)
    files.write_json_atomic(shadow_state_file(paths), state)
    return ShadowPass(state=state, new_rows=update.new_rows, resolved_rows=update.resolved_rows)


def run_fleet_shadow(paths: FleetPaths, now: dt.datetime) -> JsonObject:
    """``fleet shadow``: the shadow figures of a fleet journal, recomputed at ``now`` (read-only)."""
    state = read_shadow_state(paths)
    if state is None:
        raise ContractError(f"shadow ledger not found: {shadow_state_file(paths)} (no shadow pass yet)")
    registry = files.read_json(paths.registry_file)
    policy = registry.get("policy") if isinstance(registry, Mapping) else None
    config = shadow_agreement.ShadowConfig.read(policy if isinstance(policy, Mapping) else None)
    return shadow_agreement.build_shadow_report(state, config, str(shadow_state_file(paths)), now)
