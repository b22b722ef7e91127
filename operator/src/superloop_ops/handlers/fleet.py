"""Fleet controller: one ``reconcile_fleet`` for create, resume, update and the periodic pass.

A pass (``controllers.fleet_controller.run_fleet_pass``) materialises inline loops as owned Loops,
reads every Loop's status into the fleet rollup, evaluates the FleetPolicy, proposes
HandoffIntents and, in ``guarded_auto``, executes the eligible ones. This module only gathers
the dependencies, serialises passes of one Fleet, writes the Fleet and FleetPolicy statuses
(whole fields, so explicit nulls in the mirrored documents survive), posts Events on
transitions and updates the fleet metrics.

The retry guard hand-over also lives here: an autonomous intent whose outcome was ambiguous or
failed is left alone by the manual HandoffIntent handler; when a person approves it, this
handler hands the object to the manual path (``core.fleet.fleet_resource.build_manual_handover_status``)
and runs the manual handler's decision on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from superloop_ops.controllers import fleet_controller
from superloop_ops.core.fleet import fleet_resource
from superloop_ops.core.handoff import handoff_intent_resource
from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError, OperatorError
from superloop_ops.handlers import handoff_intent as intent_handlers
from superloop_ops.handlers.context import OperatorContext, counted_pass, fetch_context, post_events
from superloop_ops.k8s.edge import GROUP, VERSION, ObjectRef
from superloop_ops.k8s.fleet_edge import FleetEdge, KubernetesFleetEdge
from superloop_ops.metrics_fleet import fetch_fleet_metrics
from superloop_ops.metrics_promotion import fetch_promotion_metrics
from superloop_ops.models.fleet_policy import FleetPolicy

__all__ = [
    "build_fleet_deps",
    "fetch_fleet_deps",
    "find_ready_message",
    "hand_over_intent",
    "on_fleet_change",
    "on_fleet_delete",
    "on_fleet_periodic",
    "on_intent_approved",
    "reconcile_fleet",
    "write_policy_status",
    "write_status",
]

log = logging.getLogger(__name__)


def build_fleet_deps(ctx: OperatorContext, edge: FleetEdge) -> fleet_controller.FleetPassDeps:
    """The pass dependencies from the operator context (shared locks, settings, clock)."""
    return fleet_controller.FleetPassDeps(
        edge=edge,
        settings=ctx.settings,
        clock=ctx.clock,
        lock_for=ctx.lock_for,
        sleep=ctx.sleep or _sleep,
        runtime_command=ctx.runtime_command,
    )


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def fetch_fleet_deps(memo: Any) -> fleet_controller.FleetPassDeps:
    deps = getattr(memo, "fleet_deps", None)
    if isinstance(deps, fleet_controller.FleetPassDeps):
        return deps
    ctx = fetch_context(memo)
    edge = ctx.edge if hasattr(ctx.edge, "create_object") else KubernetesFleetEdge(memo.api_client)
    deps = build_fleet_deps(ctx, edge)  # type: ignore[arg-type]
    memo.fleet_deps = deps
    return deps


def write_status(
    edge: FleetEdge, ref: ObjectRef, previous: Mapping[str, Any], new: Mapping[str, Any]
) -> bool:
    """Replace the changed top-level status fields, drop the ones no longer set."""
    changed = {k: v for k, v in new.items() if previous.get(k) != v}
    removed = [k for k in previous if k not in new]
    if not changed and not removed:
        return False
    edge.replace_status_fields(ref, changed, remove=removed, has_status=bool(previous))
    return True


def write_policy_status(
    ctx: OperatorContext,
    deps: fleet_controller.FleetPassDeps,
    namespace: str,
    policy_name: str,
    policy_state: Mapping[str, Any] | None,
    blocked: tuple[str, str] | None = None,
) -> None:
    ref = fleet_controller.policy_ref(namespace, policy_name)
    body = deps.edge.fetch_object(ref)
    if body is None:
        return
    try:
        policy = FleetPolicy.from_body(body)
    except InvalidSpecError as exc:
        blocked = ("invalid_spec", str(exc))
        policy = None
    previous = dict(body.get("status") or {})
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    now = ctx.clock.now()
    if policy is None:
        new = fleet_resource.build_fleet_policy_status(
            previous=previous, generation=generation, now=now, mode=str(previous.get("mode") or "advisory"),
            canary_percent=100, manual_pause=False, governance_posture=None,
            blocked_reason=blocked[0] if blocked else None, blocked_message=blocked[1] if blocked else "",
        )  # fmt: skip
    else:
        posture = fleet_controller.compute_governance_posture(policy, now)
        rollout = policy.spec.autonomous.rollout
        new = fleet_resource.build_fleet_policy_status(
            previous=previous, generation=generation, now=now, mode=policy.spec.mode,
            canary_percent=rollout.canary_percent, manual_pause=rollout.pause.manual,
            governance_posture=str(posture.get("posture")), policy_state=policy_state, governance=posture,
            blocked_reason=blocked[0] if blocked else None, blocked_message=blocked[1] if blocked else "",
        )  # fmt: skip
    write_status(deps.edge, ref, previous, new)


@counted_pass("Fleet")
def reconcile_fleet(
    body: Mapping[str, Any], ctx: OperatorContext, deps: fleet_controller.FleetPassDeps
) -> fleet_controller.FleetPassReport:
    """One pass for one Fleet (synchronous: runs in kopf's thread pool or the daemon's thread)."""
    meta = body.get("metadata") or {}
    ref = fleet_controller.fleet_ref(
        str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", ""))
    )
    with ctx.lock_for(ref.uid or f"{ref.namespace}/{ref.name}"):
        fresh = deps.edge.fetch_object(ref)
        if fresh is None:
            return fleet_controller.FleetPassReport(ran=False, status={}, blocked_reason="not_found")
        previous = dict(fresh.get("status") or {})
        try:
            report = fleet_controller.run_fleet_pass(fresh, deps)
        except OperatorError as exc:
            reason = "dependency_not_ready" if isinstance(exc, DependencyNotReadyError) else "invalid_spec"
            status = fleet_resource.build_fleet_status(
                previous=previous,
                generation=int((fresh.get("metadata") or {}).get("generation") or 0),
                now=ctx.clock.now(),
                fleet_state=None,
                blocked_reason=reason,
                blocked_message=str(exc),
            )
            delay = exc.delay if isinstance(exc, DependencyNotReadyError) else None
            report = fleet_controller.FleetPassReport(
                ran=False, status=status, blocked_reason=reason, retry_after=delay, error=exc
            )
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
        metrics = fetch_fleet_metrics(ctx.metrics)
        metrics.observe_fleet(
            ref.namespace, ref.name, fleet_state=report.fleet_state, policy_state=report.policy_state
        )
        for _, outcome in report.autonomous_outcomes:
            metrics.record_autonomous_outcome(ref.namespace, ref.name, outcome)
        policy_name = ((fresh.get("spec") or {}).get("policyRef") or {}).get("name")
        if policy_name and report.blocked_reason != "policy_not_found":
            blocked = None
            if report.blocked_reason == "invalid_registry":
                message = str(find_ready_message(report.status))
                blocked = ("invalid_policy", message)
            try:
                write_policy_status(ctx, deps, ref.namespace, str(policy_name), report.policy_state, blocked)
            except OperatorError as exc:
                log.warning("could not write FleetPolicy %s status: %s", policy_name, exc)
    return report


def find_ready_message(status: Mapping[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return str(cond.get("message") or "")
    return ""


def _raise_for_kopf(report: fleet_controller.FleetPassReport) -> None:
    if isinstance(report.error, InvalidSpecError):
        raise kopf.PermanentError(str(report.error))
    if isinstance(report.error, DependencyNotReadyError):
        raise kopf.TemporaryError(str(report.error), delay=report.retry_after or 15.0)


@kopf.on.create(GROUP, VERSION, "fleets")
@kopf.on.resume(GROUP, VERSION, "fleets")
@kopf.on.update(GROUP, VERSION, "fleets", field="spec")
def on_fleet_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Create, resume and spec changes: the same full pass."""
    _raise_for_kopf(reconcile_fleet(dict(body), fetch_context(memo), fetch_fleet_deps(memo)))


@kopf.daemon(GROUP, VERSION, "fleets", cancellation_timeout=10.0)
async def on_fleet_periodic(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The periodic pass at ``spec.reconcileIntervalSeconds`` (sooner while loops are pending)."""
    ctx = fetch_context(memo)
    deps = fetch_fleet_deps(memo)
    delay = _interval(body)
    while not stopped:
        await stopped.wait(delay)
        if stopped:
            break
        try:
            report = await asyncio.to_thread(reconcile_fleet, dict(body), ctx, deps)
        except Exception:  # the daemon must outlive any single bad pass
            log.exception("periodic fleet pass of %s failed", (body.get("metadata") or {}).get("name"))
            delay = _interval(body)
            continue
        delay = _interval(body)
        if report.retry_after is not None:
            delay = min(delay, report.retry_after)


def _interval(body: Mapping[str, Any]) -> float:
    value = (body.get("spec") or {}).get("reconcileIntervalSeconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1:
        return float(value)
    return 60.0


@kopf.on.delete(GROUP, VERSION, "fleets", optional=True)
def on_fleet_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Drop the fleet gauges; owned Loops and HandoffIntents go with the Fleet (garbage collection)."""
    meta = body.get("metadata") or {}
    fetch_fleet_metrics(fetch_context(memo).metrics).forget_fleet(
        str(meta.get("namespace", "")), str(meta.get("name", ""))
    )
    fetch_promotion_metrics(fetch_context(memo).metrics).forget_fleet(
        str(meta.get("namespace", "")), str(meta.get("name", ""))
    )


def hand_over_intent(
    body: Mapping[str, Any], ctx: OperatorContext, edge: FleetEdge
) -> intent_handlers.IntentReport | None:
    """A person approved a retry-guarded autonomous intent: give it to the manual path, then run it."""
    ref = intent_handlers.intent_ref(body)
    approval = handoff_intent_resource.parse_approval((body.get("metadata") or {}).get("annotations") or {})
    if approval.approval is None:
        return None
    with ctx.lock_for(ref.uid or f"{ref.namespace}/{ref.name}"):
        fresh = edge.fetch_object(ref)
        if fresh is None:
            return None
        previous = dict(fresh.get("status") or {})
        handed = fleet_resource.build_manual_handover_status(previous)
        if handed is None:
            return None
        edge.replace_status_fields(ref, handed, has_status=bool(previous))
    return intent_handlers.reconcile_intent(fresh | {"status": handed}, ctx)


def _autonomous_retryable(status: Any, **_: Any) -> bool:
    return (
        isinstance(status, Mapping)
        and status.get("mode") == "autonomous"
        and status.get("phase") in handoff_intent_resource.RETRYABLE_OUTCOMES
    )


@kopf.on.update(GROUP, VERSION, "handoffintents", field="metadata.annotations", when=_autonomous_retryable)
def on_intent_approved(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Approval annotations on a retry-guarded autonomous intent (the manual handler skips those)."""
    try:
        hand_over_intent(dict(body), fetch_context(memo), fetch_fleet_deps(memo).edge)
    except InvalidSpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except DependencyNotReadyError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
