"""Glue between a Fleet object and the fleet engine: one fleet pass, as the operator runs it.

Where the journal lives: ``<state>/<namespace>`` is the "repository" (as for Loops), so the
per-loop drill-down pointers of the fleet state point at the Loop controller's journal
(``.superloop/ops-manager/<loopId>/...``). The fleet files of one Fleet live under
``.superloop/ops-manager/fleet/<fleet name>/`` (the reference layout below one directory per
Fleet, since a namespace may hold several Fleets).

How the rollup gets per-loop results: the Loop controller reconciles each Loop at its own
cadence; the fleet pass never reconciles a loop a second time. It runs the fleet engine's
fan-out with a *reader* as the loop-level reconciler: each "reconcile" returns what the Loop's
status says about its last pass (``core.fleet.fleet_resource.compute_loop_outcome``). The engine keeps the
contract's ordering (registry or ``deterministicOrder``, results in start order, at most
``maxParallel`` in flight), writes state and telemetry, and policy and handoff run unchanged.
A pass waits (Ready=False, ``LoopsPending``) until every enabled loop has had a first pass, so
"not reconciled yet" is never mistaken for a failure that autonomous mode could act on.

Intents: the plan's unsuppressed intents become HandoffIntents owned by the Fleet. Manual
execution stays with the HandoffIntent controller (approval annotation); its outcomes are
recorded back into the fleet handoff journal (which is what ends a retry guard). In
``guarded_auto`` the policy-eligible intents are executed by the handoff engine with a control
runner that marks the HandoffIntent ``executing`` (mode ``autonomous``) before the side effect
and records the outcome after it, through the same loop control path as manual execution.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from superloop_ops.clock import Clock
from superloop_ops.controllers import fleet_policy_controller, loop_controller
from superloop_ops.controllers.k8s_events import post_events
from superloop_ops.controllers.status_writes import write_status
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.fleet import fleet_resource, rollup
from superloop_ops.core.handoff import handoff_intent_resource, handoff_plan
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.errors import ContractError, DependencyNotReadyError, InvalidSpecError, OperatorError
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.k8s.fleet_edge import AlreadyExistsError, FleetEdge
from superloop_ops.metrics import OperatorMetrics
from superloop_ops.metrics_fleet import fetch_fleet_metrics
from superloop_ops.models.fleet import Fleet, build_registry_document
from superloop_ops.models.fleet_policy import FleetPolicy
from superloop_ops.models.loop import Loop, LoopSpec
from superloop_ops.settings import Settings

__all__ = [
    "AUTONOMOUS_ACTOR",
    "PROMOTION_STATE_FILE",
    "FleetPassDeps",
    "FleetPassReport",
    "build_fleet_paths",
    "find_ready_message",
    "fleet_ref",
    "reconcile_fleet",
    "run_fleet_pass",
]

log = logging.getLogger(__name__)
AUTONOMOUS_ACTOR = "superloop-ops/autonomous"
LEDGER_FILE = "operator-recorded-executions.json"
PROMOTION_STATE_FILE = "promotion-state.json"
"""The promotion gates' decision document in a Fleet's journal (written by the PromotionApply controller)."""
_BUSY_PHASES = frozenset({handoff_intent_resource.EXECUTING})


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


@dataclasses.dataclass(frozen=True)
class FleetPassReport:
    """What one pass decided and wrote (handlers turn it into Events, metrics and retries)."""

    ran: bool
    status: Mapping[str, Any]
    blocked_reason: str | None = None
    retry_after: float | None = None
    fleet_state: Mapping[str, Any] | None = None
    policy_state: Mapping[str, Any] | None = None
    handoff_state: Mapping[str, Any] | None = None
    created_intents: tuple[str, ...] = ()
    autonomous_outcomes: tuple[tuple[str, str], ...] = ()
    error: OperatorError | None = None


def fleet_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
    return ObjectRef(kind="Fleet", plural="fleets", namespace=namespace, name=name, uid=uid)


def _loop_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
    return ObjectRef(kind="Loop", plural="loops", namespace=namespace, name=name, uid=uid)


def _intent_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
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


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _parse_loop(body: Mapping[str, Any]) -> Loop:
    """The Loop's spec (its status is the Loop controller's business, read as plain data)."""
    return Loop.from_body({key: value for key, value in body.items() if key != "status"})


def _owned_by(body: Mapping[str, Any], uid: str) -> bool:
    refs = _meta(body).get("ownerReferences") or []
    return any(isinstance(r, Mapping) and r.get("uid") == uid and r.get("kind") == "Fleet" for r in refs)


# ---------------------------------------------------------------------------------------------
# owned Loops


def _ensure_owned_loops(deps: FleetPassDeps, fleet: Fleet, namespace: str, name: str, uid: str) -> None:
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
            manifest["metadata"]["annotations"][fleet_resource.SPEC_HASH_ANNOTATION] = (
                fleet_resource.compute_spec_hash(manifest["spec"])
            )
        desired[manifest["metadata"]["name"]] = manifest
    selector = f"{fleet_resource.FLEET_LABEL}={fleet_resource.compute_dns_name(name)}"
    existing = {
        str(_meta(body).get("name")): body
        for body in deps.edge.list_labelled(_loop_ref(namespace, ""), selector)
        if _owned_by(body, uid)
    }
    for loop_name, body in existing.items():
        want = desired.get(loop_name)
        have_hash = (_meta(body).get("annotations") or {}).get(fleet_resource.SPEC_HASH_ANNOTATION)
        if want is None or have_hash != want["metadata"]["annotations"][fleet_resource.SPEC_HASH_ANNOTATION]:
            deps.edge.delete_object(
                _loop_ref(namespace, loop_name), uid=str(_meta(body).get("uid") or "") or None
            )
            if want is not None:
                with contextlib.suppress(AlreadyExistsError):  # still terminating: next pass creates it
                    deps.edge.create_object(_loop_ref(namespace, loop_name), want)
    for loop_name, manifest in desired.items():
        if loop_name in existing:
            continue
        try:
            deps.edge.create_object(_loop_ref(namespace, loop_name), manifest)
        except AlreadyExistsError as exc:
            raise InvalidSpecError(
                f"Loop {loop_name} exists and is not owned by Fleet {name}; use loopRef to adopt it"
            ) from exc


# ---------------------------------------------------------------------------------------------
# reading the Loops


@dataclasses.dataclass(frozen=True)
class _LoopIndex:
    by_id: dict[str, fleet_resource.LoopBinding]
    referenced: dict[str, LoopSpec]
    missing: list[str]


def _index_loops(deps: FleetPassDeps, fleet: Fleet, namespace: str, name: str) -> _LoopIndex:
    bodies = {str(_meta(b).get("name")): b for b in deps.edge.list_objects(_loop_ref(namespace, ""))}
    by_id: dict[str, fleet_resource.LoopBinding] = {}
    referenced: dict[str, LoopSpec] = {}
    missing: list[str] = []
    for entry in fleet.spec.loops:
        loop_name = (
            entry.loop_ref.name
            if entry.loop_ref is not None
            else fleet_resource.compute_loop_name(name, entry.loop_id)
        )
        body = bodies.get(loop_name)
        if body is None:
            missing.append(loop_name)
            continue
        try:
            loop = _parse_loop(body)
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
    return _LoopIndex(by_id=by_id, referenced=referenced, missing=missing)


def _status_reader(index: _LoopIndex) -> fleet_commands.LoopReconciler:
    def read(request: fleet_commands.LoopReconcileRequest) -> rollup.LoopRunOutcome:
        binding = index.by_id.get(request.loop_id)
        outcome = fleet_resource.compute_loop_outcome(binding.status if binding else None)
        if outcome is None:
            return rollup.LoopRunOutcome(exit_code=1, output="Loop has no reconcile result yet")
        return outcome

    return read


# ---------------------------------------------------------------------------------------------
# the journal of recorded executions


def _ledger_path(paths: fleet_commands.FleetPaths) -> Path:
    return paths.handoff_state_file.parent / LEDGER_FILE


def _read_ledger(paths: fleet_commands.FleetPaths) -> set[str]:
    value = files.read_json(_ledger_path(paths))
    keys = value.get("recordedKeys") if isinstance(value, Mapping) else None
    return {str(k) for k in keys} if isinstance(keys, list) else set()


def _write_ledger(paths: fleet_commands.FleetPaths, keys: set[str]) -> None:
    files.write_json_atomic(_ledger_path(paths), {"recordedKeys": sorted(keys)[-5000:]})


def _control_status_exit(phase: str) -> int:
    if phase in handoff_intent_resource.FINAL_OUTCOMES:
        return 0
    if phase == handoff_intent_resource.EXECUTION_AMBIGUOUS:
        return 2
    return 1


def _record_object_outcomes(
    paths: fleet_commands.FleetPaths,
    intents: Sequence[Mapping[str, Any]],
    now: dt.datetime,
    journal_prior: Mapping[str, Any] | None,
) -> Mapping[str, Any] | None:
    """Journal the outcomes the HandoffIntent objects hold that the fleet journal has not seen.

    A manual success recorded this way ends the intent's retry guard (``build_executed_state``);
    a recovered autonomous outcome (crash rule) sets one. Returns the handoff state the plan
    builds on: ``journal_prior`` (the journal's last one), or the one recorded here.
    """
    recorded = _read_ledger(paths)
    fresh: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    for body in intents:
        status = body.get("status")
        if not isinstance(status, Mapping) or status.get("phase") not in handoff_intent_resource.OUTCOMES:
            continue
        key = str(status.get("idempotencyKey") or "")
        if not key or key in recorded:
            continue
        fresh.append((body, status))
    if not fresh:
        return journal_prior
    prior = journal_prior if journal_prior and isinstance(journal_prior.get("intents"), list) else None
    latest = journal_prior
    for body, status in fresh:
        intent_id = str((_meta(body).get("annotations") or {}).get(fleet_resource.INTENT_ID_ANNOTATION) or "")
        key = str(status["idempotencyKey"])
        recorded.add(key)
        if not intent_id or prior is None:
            continue
        raw_spec = body.get("spec")
        spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
        mode = str(status.get("mode") or "manual")
        raw_result = status.get("result")
        result_doc: Mapping[str, Any] = raw_result if isinstance(raw_result, Mapping) else {}
        request = handoff_plan.ExecutionRequest(
            mode=mode,
            requested_by=str(status.get("approvedBy") or AUTONOMOUS_ACTOR),
            requested_at=now,
            note=f"recorded from HandoffIntent {_meta(body).get('name')}",
        )
        plan_intent = next(
            (i for i in prior["intents"] if isinstance(i, Mapping) and i.get("intentId") == intent_id), None
        )
        base_intent: JsonObject = (
            dict(plan_intent)
            if plan_intent
            else {
                "intentId": intent_id,
                "loopId": str((spec.get("candidate") or {}).get("candidateId", ":")).split(":")[0],
                "intent": spec.get("intent"),
                "autonomous": {"eligible": False, "manualOnly": True, "reasons": []},
            }
        )
        execution = result_doc.get("execution") if isinstance(result_doc.get("execution"), Mapping) else None
        result = handoff_plan.build_execution_result(
            base_intent,
            request=request,
            trace_id=str(spec.get("traceId") or prior.get("traceId") or ""),
            idempotency_key=key,
            executed_at=now,
            outcome=handoff_plan.ControlOutcome(
                exit_code=_control_status_exit(str(status["phase"])), document=execution
            ),
        )
        state = handoff_plan.build_executed_state(
            prior, [result], request=request, requested_count=1, completed_at=now
        )
        files.append_jsonl(paths.handoff_telemetry_file, [handoff_plan.build_execute_telemetry_row(state)])
        files.write_json_atomic(paths.handoff_state_file, state)
        prior = latest = state
    _write_ledger(paths, recorded)
    return latest


# ---------------------------------------------------------------------------------------------
# HandoffIntent objects


def _intent_bodies(deps: FleetPassDeps, namespace: str, name: str, uid: str) -> dict[str, JsonObject]:
    """intentId -> owned HandoffIntent body."""
    selector = f"{fleet_resource.FLEET_LABEL}={fleet_resource.compute_dns_name(name)}"
    out: dict[str, JsonObject] = {}
    for body in deps.edge.list_labelled(_intent_ref(namespace, ""), selector):
        if not _owned_by(body, uid):
            continue
        intent_id = (_meta(body).get("annotations") or {}).get(fleet_resource.INTENT_ID_ANNOTATION)
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


def _phase(body: Mapping[str, Any] | None) -> str | None:
    status = (body or {}).get("status")
    return status.get("phase") if isinstance(status, Mapping) else None


def _sync_intents(
    deps: FleetPassDeps,
    *,
    namespace: str,
    name: str,
    uid: str,
    plan: Mapping[str, Any],
    policy_state: Mapping[str, Any] | None,
    loop_names: Mapping[str, str],
    existing: dict[str, JsonObject],
) -> list[str]:
    """Propose a HandoffIntent per planned intent; withdraw idle ones whose candidate is gone."""
    created: list[str] = []
    planned = {str(i["intentId"]): i for i in plan.get("intents") or [] if isinstance(i, Mapping)}
    for intent_id, intent in planned.items():
        if intent_id in existing or intent.get("status") != handoff_plan.PENDING:
            continue
        proposed = _create_intent(
            deps, namespace=namespace, name=name, uid=uid, intent=intent, loop_names=loop_names
        )
        if proposed is None:
            continue
        object_name, existing[intent_id] = proposed
        created.append(object_name)
    live = _live_intent_ids(policy_state)
    for intent_id, body in list(existing.items()):
        if intent_id in live or intent_id in planned or _phase(body) in _BUSY_PHASES:
            continue
        _delete_intent(deps, namespace, body)
        del existing[intent_id]
    return created


def _create_intent(
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
    manifest = fleet_resource.build_intent_manifest(
        fleet_name=name, fleet_uid=uid, intent=intent, loop_name=loop_name
    )
    object_name = str(manifest["metadata"]["name"])
    try:
        return object_name, deps.edge.create_object(_intent_ref(namespace, object_name), manifest) or manifest
    except AlreadyExistsError:
        return None


def _delete_intent(deps: FleetPassDeps, namespace: str, body: Mapping[str, Any]) -> None:
    """Delete one HandoffIntent object, preconditioned on its uid when known."""
    deps.edge.delete_object(
        _intent_ref(namespace, str(_meta(body).get("name"))),
        uid=str(_meta(body).get("uid") or "") or None,
    )


def _recover_autonomous(
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
        ref = _intent_ref(namespace, str(_meta(body).get("name")), str(_meta(body).get("uid") or ""))
        row = None
        loop_name = ((body.get("spec") or {}).get("loopRef") or {}).get("name")
        try:
            loop_body = deps.edge.fetch_object(_loop_ref(namespace, str(loop_name)))
            if loop_body is not None and key:
                target = loop_controller.build_loop_target(
                    _parse_loop(loop_body), namespace, str(loop_name), deps.settings
                )
                row = loop_controller.fetch_journal_outcome(target, key)
        except OperatorError:
            row = None
        outcome = (
            handoff_intent_resource.compute_outcome_from_control(str(row.get("status") or ""))
            if row is not None
            else handoff_intent_resource.EXECUTION_AMBIGUOUS
        )
        new = fleet_resource.build_autonomous_outcome_status(
            previous=status,
            outcome=outcome,
            execution=row,
            message="interrupted autonomous execution (operator restart); not re-run",
            generation=int(_meta(body).get("generation") or 1),
            now=deps.clock.now(),
        )
        deps.edge.replace_status_fields(ref, new)
        body["status"] = new


# ---------------------------------------------------------------------------------------------
# autonomous execution


def _autonomous_targets(
    deps: FleetPassDeps,
    *,
    namespace: str,
    name: str,
    uid: str,
    plan: Mapping[str, Any],
    loop_names: Mapping[str, str],
    existing: dict[str, JsonObject],
) -> list[str]:
    """Eligible pending intents with a fresh, idle HandoffIntent ready to record the execution."""
    ready: list[str] = []
    for intent in plan.get("intents") or []:
        if not isinstance(intent, Mapping) or intent.get("status") != handoff_plan.PENDING:
            continue
        if (intent.get("autonomous") or {}).get("eligible") is not True:
            continue
        intent_id = str(intent["intentId"])
        body = existing.get(intent_id)
        annotations = _meta(body or {}).get("annotations") or {}
        phase = _phase(body)
        if body is not None and (
            phase in _BUSY_PHASES or handoff_intent_resource.ANNOTATION_APPROVED in annotations
        ):
            continue  # a person is acting on it
        if body is not None and phase in handoff_intent_resource.OUTCOMES:
            _delete_intent(deps, namespace, body)
            existing.pop(intent_id, None)
            body = None
        if body is None:
            proposed = _create_intent(
                deps, namespace=namespace, name=name, uid=uid, intent=intent, loop_names=loop_names
            )
            if proposed is None:
                continue
            existing[intent_id] = proposed[1]
        ready.append(intent_id)
    return ready


def _autonomous_runner(
    deps: FleetPassDeps,
    *,
    namespace: str,
    key_to_intent: Mapping[str, str],
    existing: Mapping[str, JsonObject],
    outcomes: list[tuple[str, str]],
) -> fleet_commands.ControlRunner:
    def run(call: fleet_commands.ControlCall) -> handoff_plan.ControlOutcome:
        intent_id = key_to_intent.get(call.idempotency_key)
        body = existing.get(intent_id or "")
        if body is None:
            raise OperatorError(f"no HandoffIntent for {call.idempotency_key}")
        name = str(_meta(body).get("name"))
        ref = _intent_ref(namespace, name, str(_meta(body).get("uid") or ""))
        with deps.lock_for(ref.uid or f"{namespace}/{name}"):
            fresh = deps.edge.fetch_object(ref)
            if fresh is None or _phase(fresh) not in (None, handoff_intent_resource.PENDING):
                raise OperatorError(f"HandoffIntent {name} is no longer pending")
            previous = dict(fresh.get("status") or {})
            generation = int(_meta(fresh).get("generation") or 1)
            loop_name = str(((fresh.get("spec") or {}).get("loopRef") or {}).get("name"))
            loop_body = deps.edge.fetch_object(_loop_ref(namespace, loop_name))
            if loop_body is None:
                raise OperatorError(f"Loop {namespace}/{loop_name} not found")
            loop = _parse_loop(loop_body)
            target = loop_controller.build_loop_target(loop, namespace, loop_name, deps.settings)
            token = None
            service = loop.spec.service
            if loop.spec.transport == "sprite_service" and service is not None and service.token_secret_ref:
                token = deps.edge.fetch_secret_value(
                    namespace, service.token_secret_ref.name, service.token_secret_ref.key
                )
            executing = fleet_resource.build_autonomous_executing_status(
                previous=previous,
                idempotency_key=call.idempotency_key,
                generation=generation,
                now=deps.clock.now(),
            )
            files.append_jsonl(
                target.ops_dir / "telemetry" / "handoff-intents.jsonl",
                [loop_controller.build_handoff_row(
                    target, intent_name=name, intent=call.intent, phase=handoff_intent_resource.EXECUTING,
                    key=call.idempotency_key, by=AUTONOMOUS_ACTOR, now=format_ts(deps.clock.now()),
                    extra={"mode": "autonomous"},
                )],
            )  # fmt: skip
            deps.edge.replace_status_fields(ref, executing, has_status=bool(previous))
            deps.inflight.add(call.idempotency_key)
            try:
                control = loop_controller.run_loop_control(
                    loop,
                    target,
                    intent=call.intent,
                    by=AUTONOMOUS_ACTOR,
                    note=call.note,
                    idempotency_key=call.idempotency_key,
                    trace_id=call.trace_id,
                    token=token,
                    settings=deps.settings,
                    now_fn=deps.clock.now,
                    sleep=deps.sleep,
                    runtime_command=deps.runtime_command,
                )
                outcome = handoff_intent_resource.compute_outcome_from_control(control.status)
                row: Mapping[str, Any] | None = control.intent_row
                message = f"autonomous control status {control.status}"
            except OperatorError as exc:
                control = None
                outcome = handoff_intent_resource.EXECUTION_AMBIGUOUS
                row = None
                message = f"autonomous control raised: {exc}"
            finally:
                deps.inflight.discard(call.idempotency_key)
            new = fleet_resource.build_autonomous_outcome_status(
                previous=executing, outcome=outcome, execution=row, message=message, generation=generation,
                now=deps.clock.now(),
            )  # fmt: skip
            files.append_jsonl(
                target.ops_dir / "telemetry" / "handoff-intents.jsonl",
                [loop_controller.build_handoff_row(
                    target, intent_name=name, intent=call.intent, phase=outcome, key=call.idempotency_key,
                    by=AUTONOMOUS_ACTOR, now=format_ts(deps.clock.now()), extra={"mode": "autonomous"},
                )],
            )  # fmt: skip
            deps.edge.replace_status_fields(ref, new)
            outcomes.append((name, outcome))
        if control is None:
            return handoff_plan.ControlOutcome(
                exit_code=2, document={"status": "ambiguous", "error": message}
            )
        return handoff_plan.ControlOutcome(
            exit_code=handoff_plan.compute_control_exit_code(control.status), document=control.intent_row
        )

    return run


# ---------------------------------------------------------------------------------------------
# the pass


class _Blocked(Exception):
    """A phase stopped the pass: the Fleet's Ready condition says why (and when to retry)."""

    def __init__(self, reason: str, message: str, retry: float | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.retry = reason, message, retry


@dataclasses.dataclass
class _Pass:
    """What one pass parsed and decided, carried in memory from phase to phase."""

    deps: FleetPassDeps
    namespace: str
    name: str
    uid: str
    generation: int
    previous: dict[str, Any]
    fleet: Fleet
    paths: fleet_commands.FleetPaths
    policy: FleetPolicy | None = None
    index: _LoopIndex = dataclasses.field(
        default_factory=lambda: _LoopIndex(by_id={}, referenced={}, missing=[])
    )
    registry: JsonObject = dataclasses.field(default_factory=dict)
    fleet_state: JsonObject = dataclasses.field(default_factory=dict)
    policy_state: JsonObject | None = None
    handoff_state: JsonObject | None = None
    existing: dict[str, JsonObject] = dataclasses.field(default_factory=dict)
    created: list[str] = dataclasses.field(default_factory=list)
    outcomes: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def loop_names(self) -> dict[str, str]:
        return {loop_id: binding.name for loop_id, binding in self.index.by_id.items()}


def run_fleet_pass(body: Mapping[str, Any], deps: FleetPassDeps) -> FleetPassReport:
    """One fleet pass for one Fleet object; returns the new status (the caller writes it)."""
    meta = _meta(body)
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    previous = dict(body.get("status") or {})
    generation = int(meta.get("generation") or 0)
    try:
        run = _Pass(
            deps=deps, namespace=namespace, name=name, uid=str(meta.get("uid", "")), generation=generation,
            previous=previous, fleet=_parse_fleet(body),
            paths=build_fleet_paths(deps.settings, namespace, name),
        )  # fmt: skip
        _materialise_owned_loops(run)
        _fetch_policy(run)
        _index_bound_loops(run)
        _build_registry(run)
        _reconcile_loops(run)
        if run.policy is not None:
            _evaluate_policy_and_handoff(run)
    except _Blocked as blocked:
        status = fleet_resource.build_fleet_status(
            previous=previous, generation=generation, now=deps.clock.now(), fleet_state=None,
            blocked_reason=blocked.reason, blocked_message=blocked.message,
        )  # fmt: skip
        return FleetPassReport(
            ran=False, status=status, blocked_reason=blocked.reason, retry_after=blocked.retry
        )
    return FleetPassReport(
        ran=True,
        status=_build_status(run),
        fleet_state=run.fleet_state,
        policy_state=run.policy_state,
        handoff_state=run.handoff_state,
        created_intents=tuple(run.created),
        autonomous_outcomes=tuple(run.outcomes),
    )


def _parse_fleet(body: Mapping[str, Any]) -> Fleet:
    try:
        fleet = Fleet.from_body(body)
    except InvalidSpecError as exc:
        raise _Blocked("invalid_spec", str(exc)) from exc
    if fleet.spec.suspend:
        raise _Blocked("suspended", "spec.suspend is true: fleet passes are stopped")
    return fleet


def _materialise_owned_loops(run: _Pass) -> None:
    try:
        _ensure_owned_loops(run.deps, run.fleet, run.namespace, run.name, run.uid)
    except InvalidSpecError as exc:
        raise _Blocked("invalid_spec", str(exc)) from exc


def _fetch_policy(run: _Pass) -> None:
    """The FleetPolicy the Fleet names, parsed once (none named: no policy stages)."""
    if run.fleet.spec.policy_ref is None:
        return
    policy_name = run.fleet.spec.policy_ref.name
    policy_body = run.deps.edge.fetch_object(fleet_policy_controller.policy_ref(run.namespace, policy_name))
    if policy_body is None:
        raise _Blocked("policy_not_found", f"FleetPolicy {policy_name} not found", 15.0)
    try:
        run.policy = FleetPolicy.from_body(policy_body)
    except InvalidSpecError as exc:
        raise _Blocked("invalid_policy", str(exc)) from exc


def _index_bound_loops(run: _Pass) -> None:
    """Every declared Loop exists and every enabled one has had its first pass."""
    run.index = index = _index_loops(run.deps, run.fleet, run.namespace, run.name)
    if index.missing:
        raise _Blocked("loops_pending", f"Loops not found yet: {', '.join(index.missing[:10])}", 5.0)
    enabled = {entry.loop_id for entry in run.fleet.spec.loops if entry.enabled}
    pending = [
        loop_id
        for loop_id, binding in index.by_id.items()
        if loop_id in enabled
        and not binding.suspended
        and fleet_resource.compute_loop_outcome(binding.status) is None
    ]
    if pending:
        raise _Blocked(
            "loops_pending", f"waiting for the first reconcile of: {', '.join(sorted(pending)[:10])}", 3.0
        )


def _build_registry(run: _Pass) -> None:
    """The registry of this pass: built from the objects, written as the journal's record, validated once."""
    paths = run.paths
    policy = run.policy
    document = build_registry_document(
        run.fleet.spec,
        fleet_name=run.name,
        policy=policy.spec if policy else None,
        effective=policy.status.effective_rollout if policy else None,
        referenced=run.index.referenced,
    )
    for loop in document["loops"]:
        binding = run.index.by_id.get(str(loop["loopId"]))
        if binding is not None and binding.suspended:
            loop["enabled"] = False
    paths.registry_file.parent.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(paths.registry_file, document)
    try:
        run.registry = fleet_commands.validate_registry(
            document, paths.registry_file, run.deps.clock.now(), enforce_review_deadline=False
        )
    except ContractError as exc:
        raise _Blocked("invalid_registry", str(exc)) from exc


def _reconcile_loops(run: _Pass) -> None:
    """The fan-out over the Loops' own last results (never a second reconcile of a loop)."""
    spec = run.fleet.spec
    try:
        run.fleet_state = fleet_commands.reconcile_registry(
            run.paths,
            run.registry,
            settings=rollup.FanOutSettings(
                max_parallel=spec.max_parallel,
                deterministic_order=spec.deterministic_order,
                max_events=spec.max_events or None,
            ),
            trace_id=None,
            reconciler=_status_reader(run.index),
            clock=run.deps.clock,
            env={},
        )
    except ContractError as exc:
        raise _Blocked("invalid_registry", str(exc)) from exc


def _evaluate_policy_and_handoff(run: _Pass) -> None:
    """Record the intents' outcomes, evaluate the policy, plan, sync the HandoffIntents, run autonomy."""
    deps, paths = run.deps, run.paths
    run.existing = _intent_bodies(deps, run.namespace, run.name, run.uid)
    _recover_autonomous(deps, run.namespace, run.existing, run.loop_names)
    prior = _record_object_outcomes(
        paths, list(run.existing.values()), deps.clock.now(), fleet_commands.fetch_handoff_state(paths)
    )
    run.policy_state = fleet_commands.evaluate_policy(
        paths, run.registry, run.fleet_state, trace_id=None, dedupe_window_seconds=None,
        now=deps.clock.now(), env={},
    )  # fmt: skip
    run.handoff_state = fleet_commands.plan_handoff(
        paths, run.registry, run.policy_state, prior, fleet_commands.HandoffOptions(),
        control=None, clock=deps.clock, env={},
    )  # fmt: skip
    run.created = _sync_intents(
        deps, namespace=run.namespace, name=run.name, uid=run.uid, plan=run.handoff_state,
        policy_state=run.policy_state, loop_names=run.loop_names, existing=run.existing,
    )  # fmt: skip
    if run.policy_state.get("mode") == "guarded_auto":
        _execute_autonomous(run, run.policy_state, run.handoff_state)


def _execute_autonomous(run: _Pass, policy_state: JsonObject, plan: JsonObject) -> None:
    """guarded_auto: execute the eligible intents through their HandoffIntent objects."""
    deps, paths = run.deps, run.paths
    ready = _autonomous_targets(
        deps, namespace=run.namespace, name=run.name, uid=run.uid, plan=plan, loop_names=run.loop_names,
        existing=run.existing,
    )  # fmt: skip
    if not ready:
        return
    key_to_intent = {
        str(i["idempotencyKey"]): str(i["intentId"])
        for i in plan.get("intents") or []
        if isinstance(i, Mapping)
    }
    runner = _autonomous_runner(
        deps,
        namespace=run.namespace,
        key_to_intent=key_to_intent,
        existing=run.existing,
        outcomes=run.outcomes,
    )
    run.handoff_state = fleet_commands.plan_handoff(
        paths, run.registry, policy_state, plan,
        fleet_commands.HandoffOptions(
            autonomous_execute=True, by=AUTONOMOUS_ACTOR, intent_ids=tuple(ready),
            timeout_seconds=deps.settings.control_confirm_timeout_seconds,
            interval_seconds=deps.settings.control_confirm_interval_seconds,
        ),
        control=runner, clock=deps.clock, env={},
    )  # fmt: skip
    results = (run.handoff_state.get("execution") or {}).get("results") or []
    _write_ledger(
        paths, _read_ledger(paths) | {str(r.get("idempotencyKey")) for r in results if isinstance(r, Mapping)}
    )
    run.existing = _intent_bodies(deps, run.namespace, run.name, run.uid)


def _build_status(run: _Pass) -> JsonObject:
    """The Fleet status from the pass's states, the status surface and the promotion decision."""
    now = run.deps.clock.now()
    surface = fleet_commands.build_status_surface(
        run.paths, run.registry, run.fleet_state, now=now,
        policy_state=run.policy_state, handoff_state=run.handoff_state,
    )  # fmt: skip
    promotion_state = files.read_json(run.paths.registry_file.parent / PROMOTION_STATE_FILE)
    objects = {
        intent_id: {"name": _meta(b).get("name"), "phase": _phase(b)} for intent_id, b in run.existing.items()
    }
    return fleet_resource.build_fleet_status(
        previous=run.previous, generation=run.generation, now=now, fleet_state=run.fleet_state,
        fleet_status_surface=surface, handoff_state=run.handoff_state, loop_names=run.loop_names,
        intent_objects=objects,
        promotion_state=promotion_state if isinstance(promotion_state, Mapping) else None,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# applying a pass: the one writer of the Fleet status


def reconcile_fleet(body: Mapping[str, Any], deps: FleetPassDeps) -> FleetPassReport:
    """One pass for one Fleet, applied: its status (once, skipped when unchanged), Events, metrics,
    and the FleetPolicy posture (synchronous: runs in kopf's thread pool or the daemon's thread)."""
    meta = _meta(body)
    ref = fleet_ref(str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", "")))
    with deps.lock_for(ref.uid or f"{ref.namespace}/{ref.name}"):
        fresh = deps.edge.fetch_object(ref)
        if fresh is None:
            return FleetPassReport(ran=False, status={}, blocked_reason="not_found")
        previous = dict(fresh.get("status") or {})
        report = _run_guarded(fresh, previous, deps)
        write_status(deps.edge, ref, previous, report.status)
        post_events(
            deps.edge,
            ref,
            fleet_resource.compute_fleet_events(
                previous,
                report.status,
                created_intents=report.created_intents,
                autonomous_outcomes=report.autonomous_outcomes,
            ),
            log,
        )
        _observe(deps, ref, report)
        _write_policy_posture(deps, ref, fresh, report)
    return report


def _run_guarded(
    fresh: Mapping[str, Any], previous: Mapping[str, Any], deps: FleetPassDeps
) -> FleetPassReport:
    """The pass; an operator error becomes a blocked status (and the error kopf retries on)."""
    try:
        return run_fleet_pass(fresh, deps)
    except OperatorError as exc:
        reason = "dependency_not_ready" if isinstance(exc, DependencyNotReadyError) else "invalid_spec"
        status = fleet_resource.build_fleet_status(
            previous=previous,
            generation=int(_meta(fresh).get("generation") or 0),
            now=deps.clock.now(),
            fleet_state=None,
            blocked_reason=reason,
            blocked_message=str(exc),
        )
        delay = exc.delay if isinstance(exc, DependencyNotReadyError) else None
        return FleetPassReport(ran=False, status=status, blocked_reason=reason, retry_after=delay, error=exc)


def _observe(deps: FleetPassDeps, ref: ObjectRef, report: FleetPassReport) -> None:
    metrics = fetch_fleet_metrics(deps.metrics)
    metrics.observe_fleet(
        ref.namespace, ref.name, fleet_state=report.fleet_state, policy_state=report.policy_state
    )
    for _, outcome in report.autonomous_outcomes:
        metrics.record_autonomous_outcome(ref.namespace, ref.name, outcome)


def _write_policy_posture(
    deps: FleetPassDeps, ref: ObjectRef, fresh: Mapping[str, Any], report: FleetPassReport
) -> None:
    """Mirror the pass's policy state on the FleetPolicy (an invalid registry blocks it too)."""
    policy_name = ((fresh.get("spec") or {}).get("policyRef") or {}).get("name")
    if not policy_name or report.blocked_reason == "policy_not_found":
        return
    blocked = None
    if report.blocked_reason == "invalid_registry":
        blocked = ("invalid_policy", find_ready_message(report.status))
    try:
        fleet_policy_controller.write_policy_status(
            deps.edge, deps.clock, ref.namespace, str(policy_name), report.policy_state, blocked
        )
    except OperatorError as exc:
        log.warning("could not write FleetPolicy %s status: %s", policy_name, exc)


def find_ready_message(status: Mapping[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return str(cond.get("message") or "")
    return ""
