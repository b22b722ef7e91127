"""guarded_auto execution of a fleet pass, and the ledger of outcomes recorded into the journal.

In ``guarded_auto`` the policy-eligible intents are executed by the handoff engine with a control
runner (``build_autonomous_runner``) that marks the HandoffIntent ``executing`` (mode
``autonomous``) before the side effect and records the outcome after it, through the same loop
control path as manual execution. Manual execution stays with the HandoffIntent handler
(approval annotation); the outcomes the objects hold are recorded back into the fleet handoff
journal (``record_object_outcomes``, which is what ends a retry guard), once each (the ledger).
An intent is not executed again while its Loop's status predates its last outcome. The crash
points ``autonomous.*`` (``journal.crash_points.AUTONOMOUS_POINTS``) mark the runner's steps for
the fault tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from superloop_ops.controllers import loop_controller
from superloop_ops.controllers.fleet_objects import (
    FleetPassDeps,
    intent_ref,
    loop_ref,
    object_meta,
    parse_loop_spec,
)
from superloop_ops.controllers.handoff_intent_objects import (
    BUSY_PHASES,
    create_intent,
    delete_intent,
    read_phase,
    write_intent_status,
)
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.fleet import owned_names
from superloop_ops.core.handoff import handoff_intent_resource, handoff_plan
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.errors import OperatorError
from superloop_ops.journal import crash_points, files

__all__ = [
    "AUTONOMOUS_ACTOR",
    "build_autonomous_runner",
    "read_ledger",
    "record_object_outcomes",
    "select_autonomous_targets",
    "write_ledger",
]

AUTONOMOUS_ACTOR = "superloop-ops/autonomous"
LEDGER_FILE = "operator-recorded-executions.json"


# ---------------------------------------------------------------------------------------------
# the journal of recorded executions


def _ledger_path(paths: fleet_commands.FleetPaths) -> Path:
    return paths.handoff_state_file.parent / LEDGER_FILE


def read_ledger(paths: fleet_commands.FleetPaths) -> set[str]:
    value = files.read_json(_ledger_path(paths))
    keys = value.get("recordedKeys") if isinstance(value, Mapping) else None
    return {str(k) for k in keys} if isinstance(keys, list) else set()


def write_ledger(paths: fleet_commands.FleetPaths, keys: set[str]) -> None:
    files.write_json_atomic(_ledger_path(paths), {"recordedKeys": sorted(keys)[-5000:]})


def _control_status_exit(phase: str) -> int:
    if phase in handoff_intent_resource.FINAL_OUTCOMES:
        return 0
    if phase == handoff_intent_resource.EXECUTION_AMBIGUOUS:
        return 2
    return 1


def record_object_outcomes(
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
    recorded = read_ledger(paths)
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
        intent_id = str(
            (object_meta(body).get("annotations") or {}).get(owned_names.INTENT_ID_ANNOTATION) or ""
        )
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
            note=f"recorded from HandoffIntent {object_meta(body).get('name')}",
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
    write_ledger(paths, recorded)
    return latest


# ---------------------------------------------------------------------------------------------
# autonomous execution


def select_autonomous_targets(
    deps: FleetPassDeps,
    *,
    namespace: str,
    name: str,
    uid: str,
    plan: Mapping[str, Any],
    loop_names: Mapping[str, str],
    loop_observed_at: Mapping[str, dt.datetime | None],
    existing: dict[str, JsonObject],
) -> list[str]:
    """Eligible pending intents with a fresh, idle HandoffIntent ready to record the execution.

    An intent whose last outcome its Loop's status has not observed yet waits (``loop_observed_at``:
    when each loop's status was last written): the plan's health predates that execution.
    """
    ready: list[str] = []
    for intent in plan.get("intents") or []:
        if not isinstance(intent, Mapping) or intent.get("status") != handoff_plan.PENDING:
            continue
        if (intent.get("autonomous") or {}).get("eligible") is not True:
            continue
        intent_id = str(intent["intentId"])
        body = existing.get(intent_id)
        annotations = object_meta(body or {}).get("annotations") or {}
        phase = read_phase(body)
        if body is not None and (
            phase in BUSY_PHASES or handoff_intent_resource.ANNOTATION_APPROVED in annotations
        ):
            continue  # a person is acting on it
        if handoff_intent_resource.is_outcome_unobserved(
            (body or {}).get("status"), loop_observed_at.get(str(intent.get("loopId")))
        ):
            continue  # acting again now would act on health read before the last execution
        if body is not None and phase in handoff_intent_resource.OUTCOMES:
            delete_intent(deps, namespace, body)
            existing.pop(intent_id, None)
            body = None
        if body is None:
            proposed = create_intent(
                deps, namespace=namespace, name=name, uid=uid, intent=intent, loop_names=loop_names
            )
            if proposed is None:
                continue
            existing[intent_id] = proposed[1]
        ready.append(intent_id)
    return ready


def build_autonomous_runner(
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
        name = str(object_meta(body).get("name"))
        ref = intent_ref(namespace, name, str(object_meta(body).get("uid") or ""))
        with deps.lock_for(ref.uid or f"{namespace}/{name}"):
            fresh = deps.edge.fetch_object(ref)
            if fresh is None or read_phase(fresh) not in (None, handoff_intent_resource.PENDING):
                raise OperatorError(f"HandoffIntent {name} is no longer pending")
            previous = dict(fresh.get("status") or {})
            generation = int(object_meta(fresh).get("generation") or 1)
            loop_name = str(((fresh.get("spec") or {}).get("loopRef") or {}).get("name"))
            loop_body = deps.edge.fetch_object(loop_ref(namespace, loop_name))
            if loop_body is None:
                raise OperatorError(f"Loop {namespace}/{loop_name} not found")
            loop = parse_loop_spec(loop_body)
            target = loop_controller.build_loop_target(loop, namespace, loop_name, deps.settings)
            token = None
            service = loop.spec.service
            if loop.spec.transport == "sprite_service" and service is not None and service.token_secret_ref:
                token = deps.edge.fetch_secret_value(
                    namespace, service.token_secret_ref.name, service.token_secret_ref.key
                )
            trace = str((fresh.get("spec") or {}).get("traceId") or call.trace_id)  # the remediation's
            executing = handoff_intent_resource.build_autonomous_executing_status(
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
                    extra={"mode": "autonomous", "traceId": trace},
                )],
            )  # fmt: skip
            crash_points.reach("autonomous.executing_status")
            write_intent_status(deps.edge, ref, previous, executing)
            deps.inflight.add(call.idempotency_key)
            try:
                control = loop_controller.run_loop_control(
                    loop,
                    target,
                    intent=call.intent,
                    by=AUTONOMOUS_ACTOR,
                    note=call.note,
                    idempotency_key=call.idempotency_key,
                    trace_id=trace,
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
            new = handoff_intent_resource.build_autonomous_outcome_status(
                previous=executing, outcome=outcome, execution=row, message=message, generation=generation,
                now=deps.clock.now(),
            )  # fmt: skip
            files.append_jsonl(
                target.ops_dir / "telemetry" / "handoff-intents.jsonl",
                [loop_controller.build_handoff_row(
                    target, intent_name=name, intent=call.intent, phase=outcome, key=call.idempotency_key,
                    by=AUTONOMOUS_ACTOR, now=format_ts(deps.clock.now()),
                    extra={"mode": "autonomous", "traceId": trace},
                )],
            )  # fmt: skip
            crash_points.reach("autonomous.outcome_status")
            write_intent_status(deps.edge, ref, executing, new)
            outcomes.append((name, outcome))
        crash_points.reach("autonomous.fleet_record")  # the fleet journal records the result next
        if control is None:
            return handoff_plan.ControlOutcome(
                exit_code=2, document={"status": "ambiguous", "error": message}
            )
        return handoff_plan.ControlOutcome(
            exit_code=handoff_plan.compute_control_exit_code(control.status), document=control.intent_row
        )

    return run
