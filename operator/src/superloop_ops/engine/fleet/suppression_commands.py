"""``superloop-ops fleet suppressions``: each suppression of the registry, its terms, state and what it hid.

Reads the registry (validated like every fleet command) and, when present, the last policy state
for the counts; writes nothing. The rows are ``core.fleet.suppressions``'s, recomputed at ``now``
so an entry that expired since the last policy run already shows as expired.
"""

from __future__ import annotations

from collections.abc import Mapping

from superloop_ops import clock as clock_mod
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.fleet import suppressions
from superloop_ops.engine.fleet.fleet_commands import FleetPaths, fetch_registry
from superloop_ops.journal import files

__all__ = ["run_fleet_suppressions"]


def run_fleet_suppressions(paths: FleetPaths, *, clock: clock_mod.Clock) -> JsonObject:
    """The suppressions document: ``{schemaVersion, generatedAt, fleetId, suppressions: [...]}``."""
    now = clock.now()
    registry = fetch_registry(paths.registry_file, now, enforce_review_deadline=False)
    state = files.read_json(paths.policy_state_file)
    block = state.get("suppressionState") if isinstance(state, Mapping) else None
    counted = block.get("entries") if isinstance(block, Mapping) else None
    return {
        "schemaVersion": "v1",
        "generatedAt": format_ts(now),
        "fleetId": registry.get("fleetId"),
        "suppressions": suppressions.build_suppression_status(
            registry["policy"], now, counted if isinstance(counted, list) else None
        ),
    }
