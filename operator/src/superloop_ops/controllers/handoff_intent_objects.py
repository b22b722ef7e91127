"""The HandoffIntent objects a Fleet owns: listing, proposing, withdrawing, crash recovery, and
the one writer of every HandoffIntent status (``write_intent_status``: the manual handler, the
retry-guard hand-over, the autonomous runner and the crash recovery all write through it).

The plan's unsuppressed intents become HandoffIntents owned by the Fleet (``sync_intents``), at
most the policy's ``handoff.maxIntentsPerPass`` a pass (``core.handoff.intent_pacing``: the rest
wait in the journal's ``handoff-deferred.json`` for the following passes); idle ones whose
candidate is gone are withdrawn. An autonomous intent left ``executing`` by a
dead process gets the journal's outcome, else ``execution_ambiguous`` (``recover_autonomous``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from superloop_ops.controllers import loop_controller
from superloop_ops.controllers.fleet_objects import (
    FleetPassDeps,
    intent_ref,
    is_owned_by,
    loop_ref,
    object_meta,
    parse_loop_spec,
)
from superloop_ops.controllers.status_writes import write_status
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.fleet import owned_names
from superloop_ops.core.handoff import handoff_intent_resource, intent_pacing
from superloop_ops.errors import OperatorError
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.k8s.fleet_edge import AlreadyExistsError, FleetEdge

__all__ = [
    "BUSY_PHASES",
    "DEFERRED_FILE",
    "IntentSync",
    "create_intent",
    "delete_intent",
    "list_intent_bodies",
    "read_phase",
    "recover_autonomous",
    "sync_intents",
    "write_intent_status",
]

BUSY_PHASES = frozenset({handoff_intent_resource.EXECUTING})
DEFERRED_FILE = "handoff-deferred.json"
"""The intents a Fleet's passes deferred (``maxIntentsPerPass``), in its journal next to the handoff state."""


# ---------------------------------------------------------------------------------------------
# HandoffIntent objects


def write_intent_status(
    edge: FleetEdge, ref: ObjectRef, previous: Mapping[str, Any], new: Mapping[str, Any]
) -> bool:
    """Write one HandoffIntent status (whole changed fields, skipped when unchanged).

    Raises when the write fails: ``executing`` must be recorded before any side effect.
    """
    return write_status(edge, ref, previous, new)


def list_intent_bodies(deps: FleetPassDeps, namespace: str, name: str, uid: str) -> dict[str, JsonObject]:
    """intentId -> owned HandoffIntent body."""
    selector = f"{owned_names.FLEET_LABEL}={owned_names.compute_dns_name(name)}"
    out: dict[str, JsonObject] = {}
    for body in deps.edge.list_labelled(intent_ref(namespace, ""), selector):
        if not is_owned_by(body, uid):
            continue
        intent_id = (object_meta(body).get("annotations") or {}).get(owned_names.INTENT_ID_ANNOTATION)
        if intent_id:
            out[str(intent_id)] = body
    return out


def _live_intent_ids(policy_state: Mapping[str, Any] | None) -> set[str]:
    """Intents whose candidate still stands (unsuppressed, or only held back by the advisory cooldown)."""
    live: set[str] = set()
    candidates = (policy_state or {}).get("candidates")
    for candidate in candidates if isinstance(candidates, list) else []:
        if not isinstance(candidate, Mapping):
            continue
        if candidate.get("suppressed") is True and candidate.get("suppressionScope") != "cooldown":
            continue
        candidate_id = (
            candidate.get("candidateId") or f"{candidate.get('loopId')}:{candidate.get('category')}"
        )
        live.add(f"{candidate_id}:{candidate.get('recommendedIntent') or 'cancel'}")
    return live


def read_phase(body: Mapping[str, Any] | None) -> str | None:
    status = (body or {}).get("status")
    return status.get("phase") if isinstance(status, Mapping) else None


@dataclasses.dataclass(frozen=True)
class IntentSync:
    """What one sync did: the HandoffIntents it proposed and how it paced the planned intents."""

    created: list[str]
    pacing: intent_pacing.IntentPacing


def sync_intents(
    deps: FleetPassDeps,
    *,
    namespace: str,
    name: str,
    uid: str,
    plan: Mapping[str, Any],
    policy_state: Mapping[str, Any] | None,
    loop_names: Mapping[str, str],
    existing: dict[str, JsonObject],
    cap: int,
    deferred_file: Path,
) -> IntentSync:
    """Propose a HandoffIntent per planned intent, at most ``cap`` (the rest deferred to the
    following passes, kept in ``deferred_file``); withdraw idle ones whose candidate is gone."""
    planned = {str(i["intentId"]): i for i in plan.get("intents") or [] if isinstance(i, Mapping)}
    live = _live_intent_ids(policy_state)
    pacing = intent_pacing.pace_intents(
        planned.values(), _read_deferred(deferred_file), existing=existing.keys(), live=live, cap=cap
    )
    created: list[str] = []
    for intent in pacing.propose:
        proposed = create_intent(
            deps, namespace=namespace, name=name, uid=uid, intent=intent, loop_names=loop_names
        )
        if proposed is None:
            continue
        object_name, existing[str(intent["intentId"])] = proposed
        created.append(object_name)
    _write_deferred(deferred_file, pacing.deferred)
    for intent_id, body in list(existing.items()):
        if intent_id in live or intent_id in planned or read_phase(body) in BUSY_PHASES:
            continue
        delete_intent(deps, namespace, body)
        del existing[intent_id]
    return IntentSync(created, pacing)


def _read_deferred(path: Path) -> list[Mapping[str, Any]]:
    document = files.read_json(path)
    intents = document.get("intents") if isinstance(document, Mapping) else None
    return [i for i in intents if isinstance(i, Mapping)] if isinstance(intents, list) else []


def _write_deferred(path: Path, deferred: tuple[JsonObject, ...]) -> None:
    """Replace the deferred intents (written only when they changed; removed when none are left)."""
    if not deferred:
        path.unlink(missing_ok=True)
        return
    document = {"schemaVersion": "v1", "intents": list(deferred)}
    if files.read_json(path) != document:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(path, document)


def create_intent(
    deps: FleetPassDeps,
    *,
    namespace: str,
    name: str,
    uid: str,
    intent: Mapping[str, Any],
    loop_names: Mapping[str, str],
) -> tuple[str, JsonObject] | None:
    """Create the HandoffIntent object of a planned intent: (object name, body as created).

    None when the intent's loop has no Loop object or an object of that name already exists (a
    concurrent pass created it; the next pass lists it).
    """
    loop_name = loop_names.get(str(intent.get("loopId")))
    if loop_name is None:
        return None
    manifest = handoff_intent_resource.build_intent_manifest(
        fleet_name=name, fleet_uid=uid, intent=intent, loop_name=loop_name
    )
    object_name = str(manifest["metadata"]["name"])
    try:
        return object_name, deps.edge.create_object(intent_ref(namespace, object_name), manifest) or manifest
    except AlreadyExistsError:
        return None


def delete_intent(deps: FleetPassDeps, namespace: str, body: Mapping[str, Any]) -> None:
    """Delete one HandoffIntent object, preconditioned on its uid when known."""
    deps.edge.delete_object(
        intent_ref(namespace, str(object_meta(body).get("name"))),
        uid=str(object_meta(body).get("uid") or "") or None,
    )


def recover_autonomous(
    deps: FleetPassDeps, namespace: str, existing: Mapping[str, JsonObject], loop_names: Mapping[str, str]
) -> None:
    """An autonomous intent left ``executing`` by a dead process: the journal's outcome, else ambiguous."""
    for body in existing.values():
        status = body.get("status")
        if not isinstance(status, Mapping) or status.get("mode") != "autonomous":
            continue
        key = str(status.get("idempotencyKey") or "")
        if status.get("phase") != handoff_intent_resource.EXECUTING or key in deps.inflight:
            continue
        ref = intent_ref(
            namespace, str(object_meta(body).get("name")), str(object_meta(body).get("uid") or "")
        )
        row = None
        loop_name = ((body.get("spec") or {}).get("loopRef") or {}).get("name")
        try:
            loop_body = deps.edge.fetch_object(loop_ref(namespace, str(loop_name)))
            if loop_body is not None and key:
                target = loop_controller.build_loop_target(
                    parse_loop_spec(loop_body), namespace, str(loop_name), deps.settings
                )
                row = loop_controller.fetch_journal_outcome(target, key)
        except OperatorError:
            row = None
        outcome = (
            handoff_intent_resource.compute_outcome_from_control(str(row.get("status") or ""))
            if row is not None
            else handoff_intent_resource.EXECUTION_AMBIGUOUS
        )
        new = handoff_intent_resource.build_autonomous_outcome_status(
            previous=status,
            outcome=outcome,
            execution=row,
            message="interrupted autonomous execution (operator restart); not re-run",
            generation=int(object_meta(body).get("generation") or 1),
            now=deps.clock.now(),
        )
        write_intent_status(deps.edge, ref, status, new)
        body["status"] = new
