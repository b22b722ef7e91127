"""One fleet pass, as the operator runs it, and its application to the Fleet.

``run_fleet_pass`` is a list of named phases over one in-memory ``_Pass``: parse the Fleet,
materialise owned Loops (``controllers.owned_loops``), fetch the FleetPolicy, index the Loops,
build the registry (written as the journal's record, validated once), the rollup fan-out, then
with a policy: record the intents' outcomes, evaluate the policy, plan, sync the HandoffIntents
(``controllers.handoff_intent_objects``) and in ``guarded_auto`` execute the eligible ones
(``controllers.autonomous_runner``); last the Fleet status. The engine keeps the contract's
ordering (registry or ``deterministicOrder``, results in start order, at most ``maxParallel`` in
flight). A pass waits (Ready=False, ``LoopsPending``) until every enabled loop has had a first
pass, so "not reconciled yet" is never mistaken for a failure that autonomous mode could act on.

``reconcile_fleet`` serialises the passes of one Fleet and applies one: the Fleet status (the one
writer, skipped when unchanged), Events, metrics and the FleetPolicy posture
(``controllers.fleet_policy_controller``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from superloop_ops.controllers import fleet_policy_controller, remediation_journal
from superloop_ops.controllers.autonomous_runner import (
    AUTONOMOUS_ACTOR,
    build_autonomous_runner,
    read_ledger,
    record_object_outcomes,
    select_autonomous_targets,
    write_ledger,
)
from superloop_ops.controllers.fleet_objects import (
    FleetPassDeps,
    ValidatedRegistry,
    build_fleet_paths,
    fleet_ref,
    object_meta,
)
from superloop_ops.controllers.handoff_intent_objects import (
    DEFERRED_FILE,
    list_intent_bodies,
    read_phase,
    recover_autonomous,
    sync_intents,
)
from superloop_ops.controllers.k8s_events import post_events
from superloop_ops.controllers.owned_loops import (
    LoopIndex,
    build_status_reader,
    ensure_owned_loops,
    index_loops,
)
from superloop_ops.controllers.status_writes import write_status
from superloop_ops.core.common.jsonutil import JsonObject, parse_ts
from superloop_ops.core.fleet import fleet_resource, rollup
from superloop_ops.core.fleet.fleet_members import LoopMember, collect_members, resolve_entries
from superloop_ops.engine.fleet import fleet_commands, shadow_ledger
from superloop_ops.errors import ContractError, DependencyNotReadyError, InvalidSpecError, OperatorError
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.metrics_fleet import fetch_fleet_metrics
from superloop_ops.metrics_shadow import fetch_shadow_metrics
from superloop_ops.metrics_suppressions import fetch_suppression_metrics
from superloop_ops.models.fleet import Fleet, FleetLoopEntry, build_registry_document
from superloop_ops.models.fleet_policy import FleetPolicy

__all__ = [
    "PROMOTION_STATE_FILE",
    "FleetPassReport",
    "find_ready_message",
    "reconcile_fleet",
    "run_fleet_pass",
]

log = logging.getLogger(__name__)
PROMOTION_STATE_FILE = "promotion-state.json"
"""The promotion gates' decision document in a Fleet's journal (written by the PromotionApply controller)."""



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
    shadow: shadow_ledger.ShadowPass | None = None
    unchanged: bool = False
    """Nothing the pass reads changed since the last one: nothing was written (the status stands)."""
    handoff_pacing: Mapping[str, Any] | None = None
    """How many HandoffIntents the pass proposed and deferred (``maxIntentsPerPass``)."""


# ---------------------------------------------------------------------------------------------
# the pass


class _Unchanged(Exception):
    """Nothing the pass reads changed since this Fleet's last full pass, which is recent enough."""


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
    members: dict[str, LoopMember] = dataclasses.field(default_factory=dict)
    entries: list[FleetLoopEntry] = dataclasses.field(default_factory=list)
    policy: FleetPolicy | None = None
    index: LoopIndex = dataclasses.field(
        default_factory=lambda: LoopIndex(by_id={}, referenced={}, missing=[])
    )
    registry: JsonObject = dataclasses.field(default_factory=dict)
    fleet_state: JsonObject = dataclasses.field(default_factory=dict)
    policy_state: JsonObject | None = None
    handoff_state: JsonObject | None = None
    existing: dict[str, JsonObject] = dataclasses.field(default_factory=dict)
    inputs: Any = None
    created: list[str] = dataclasses.field(default_factory=list)
    pacing: JsonObject | None = None
    outcomes: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    shadow: shadow_ledger.ShadowPass | None = None

    @property
    def key(self) -> str:
        return self.uid or f"{self.namespace}/{self.name}"

    @property
    def loop_names(self) -> dict[str, str]:
        return {loop_id: binding.name for loop_id, binding in self.index.by_id.items()}


def run_fleet_pass(body: Mapping[str, Any], deps: FleetPassDeps) -> FleetPassReport:
    """One fleet pass for one Fleet object; returns the new status (the caller writes it).

    The pass reads its member Loops from ``deps.members`` (kept by the Loop watch; no LIST).
    When nothing it reads changed since this Fleet's last full pass (``_skip_when_unchanged``)
    it stops early and reports ``unchanged``.
    """
    meta = object_meta(body)
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    previous = dict(body.get("status") or {})
    generation = int(meta.get("generation") or 0)
    try:
        run = _Pass(
            deps=deps, namespace=namespace, name=name, uid=str(meta.get("uid", "")), generation=generation,
            previous=previous, fleet=_parse_fleet(body),
            paths=build_fleet_paths(deps.settings, namespace, name),
            members=collect_members(deps.members.get(namespace, ())),
        )  # fmt: skip
        _materialise_owned_loops(run)
        _fetch_policy(run)
        _index_bound_loops(run)
        _skip_when_unchanged(run)
        _build_registry(run)
        _reconcile_loops(run)
        if run.policy is not None:
            _evaluate_policy_and_handoff(run, run.policy)
    except _Unchanged:
        return FleetPassReport(ran=False, status=previous, unchanged=True)
    except _Blocked as blocked:
        deps.last_inputs.pop(str(meta.get("uid", "")) or f"{namespace}/{name}", None)
        status = fleet_resource.build_fleet_status(
            previous=previous, generation=generation, now=deps.clock.now(), fleet_state=None,
            blocked_reason=blocked.reason, blocked_message=blocked.message,
        )  # fmt: skip
        return FleetPassReport(
            ran=False, status=status, blocked_reason=blocked.reason, retry_after=blocked.retry
        )
    status = _build_status(run)
    deps.last_inputs[run.key] = (run.inputs, deps.clock.now())
    return FleetPassReport(
        ran=True,
        status=status,
        fleet_state=run.fleet_state,
        policy_state=run.policy_state,
        handoff_state=run.handoff_state,
        created_intents=tuple(run.created),
        autonomous_outcomes=tuple(run.outcomes),
        shadow=run.shadow,
        handoff_pacing=run.pacing,
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
        ensure_owned_loops(run.deps, run.fleet, run.namespace, run.name, run.uid, run.members)
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
    run.entries = resolve_entries(run.fleet.spec, run.members)
    if not run.entries:
        raise _Blocked("loops_pending", "no Loop matches the selector yet", 15.0)
    run.index = index = index_loops(run.entries, run.name, run.members)
    if index.missing:
        raise _Blocked("loops_pending", f"Loops not found yet: {', '.join(index.missing[:10])}", 5.0)
    enabled = {entry.loop_id for entry in run.entries if entry.enabled}
    pending = [
        loop_id
        for loop_id, binding in index.by_id.items()
        if loop_id in enabled and not binding.suspended and binding.outcome is None
    ]
    if pending:
        raise _Blocked(
            "loops_pending", f"waiting for the first reconcile of: {', '.join(sorted(pending)[:10])}", 3.0
        )


@dataclasses.dataclass(frozen=True)
class _PassInputs:
    """Everything a full pass reads besides the clock; equal inputs give the same status."""

    generation: int
    policy: tuple[Any, Any] | None
    bindings: tuple[tuple[str, fleet_resource.LoopBinding], ...]
    referenced: tuple[tuple[str, LoopMember], ...]
    intents: tuple[tuple[str, str], ...]
    promotion: tuple[int, int] | None


def _read_inputs(run: _Pass) -> _PassInputs:
    if run.policy is not None:
        run.existing = list_intent_bodies(run.deps, run.namespace, run.name, run.uid)
    try:
        stat = (run.paths.registry_file.parent / PROMOTION_STATE_FILE).stat()
        promotion: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        promotion = None
    return _PassInputs(
        generation=run.generation,
        policy=(run.policy.spec, run.policy.status.effective_rollout) if run.policy else None,
        bindings=tuple(run.index.by_id.items()),
        referenced=tuple(run.index.referenced.items()),
        intents=tuple(sorted(_version(body) for body in run.existing.values())),
        promotion=promotion,
    )


def _version(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = object_meta(body)
    return str(meta.get("name")), str(meta.get("resourceVersion"))


def _skip_when_unchanged(run: _Pass) -> None:
    """Stop here when this Fleet has no policy and its last full pass read the same inputs, less
    than ``fleet_recheck_seconds`` ago (issue 12: a pass's cost follows change, not fleet size)."""
    run.inputs = _read_inputs(run)
    if run.policy is not None:
        return  # a policy's rules also move with time (cooldowns, windows, suppression terms, reviews)
    last = run.deps.last_inputs.get(run.key)
    if last is None or last[0] != run.inputs:
        run.deps.last_inputs.pop(run.key, None)  # recorded again when this pass completes
        return
    if (run.deps.clock.now() - last[1]).total_seconds() >= run.deps.settings.fleet_recheck_seconds:
        return
    raise _Unchanged


def _build_registry(run: _Pass) -> None:
    """The registry of this pass: built from the objects, written as the journal's record, validated once."""
    paths = run.paths
    policy = run.policy
    document = build_registry_document(
        run.fleet.spec.model_copy(update={"loops": run.entries}),
        fleet_name=run.name,
        policy=policy.spec if policy else None,
        effective=policy.status.effective_rollout if policy else None,
        referenced=run.index.referenced,
    )
    for loop in document["loops"]:
        binding = run.index.by_id.get(str(loop["loopId"]))
        if binding is not None and binding.suspended:
            loop["enabled"] = False
    now = run.deps.clock.now()
    last = run.deps.last_registry.get(run.key)
    if last is not None and last.document == document and last.fresh(now, run.deps.settings):
        run.registry = last.registry  # the same document, validated less than a refresh period ago
        return
    run.deps.last_registry.pop(run.key, None)
    paths.registry_file.parent.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(paths.registry_file, document)
    try:
        run.registry = fleet_commands.validate_registry(
            document, paths.registry_file, now, enforce_review_deadline=False
        )
    except ContractError as exc:
        raise _Blocked("invalid_registry", str(exc)) from exc
    run.deps.last_registry[run.key] = ValidatedRegistry(document, run.registry, now)


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
            reconciler=build_status_reader(run.index),
            clock=run.deps.clock,
            env={},
            in_memory=True,
        )
    except ContractError as exc:
        raise _Blocked("invalid_registry", str(exc)) from exc


def _evaluate_policy_and_handoff(run: _Pass, policy: FleetPolicy) -> None:
    """Record the intents' outcomes, evaluate the policy, plan, sync the HandoffIntents, run autonomy."""
    deps, paths = run.deps, run.paths
    listed = dict(run.existing)  # (listed with the inputs) before the sync withdraws those gone
    recover_autonomous(deps, run.namespace, run.existing, run.loop_names)
    prior = record_object_outcomes(
        paths, list(run.existing.values()), deps.clock.now(), fleet_commands.fetch_handoff_state(paths)
    )
    prior_policy = files.read_json(paths.policy_state_file)
    run.policy_state = fleet_commands.evaluate_policy(
        paths, run.registry, run.fleet_state, trace_id=None, dedupe_window_seconds=None,
        now=deps.clock.now(), env={},
    )  # fmt: skip
    run.handoff_state = fleet_commands.plan_handoff(
        paths, run.registry, run.policy_state, prior, fleet_commands.HandoffOptions(),
        control=None, clock=deps.clock, env={},
    )  # fmt: skip
    sync = sync_intents(
        deps, namespace=run.namespace, name=run.name, uid=run.uid, plan=run.handoff_state,
        policy_state=run.policy_state, loop_names=run.loop_names, existing=run.existing,
        cap=policy.spec.handoff.max_intents_per_pass,
        deferred_file=paths.handoff_state_file.parent / DEFERRED_FILE,
    )  # fmt: skip
    run.created, run.pacing = sync.created, sync.pacing.build_status(len(sync.created))
    remediation_journal.record_fleet_steps(
        paths.handoff_telemetry_file.parent, fleet=run.name,
        prior_policy=prior_policy if isinstance(prior_policy, Mapping) else None,
        policy_state=run.policy_state,
        created=[b for b in run.existing.values() if object_meta(b).get("name") in run.created],
        now=deps.clock.now(),
    )  # fmt: skip
    if run.policy_state.get("mode") == "guarded_auto":
        _execute_autonomous(run, run.policy_state, run.handoff_state)
    _record_shadow(run, run.policy_state, {**listed, **run.existing})


def _record_shadow(run: _Pass, policy_state: JsonObject, intents: Mapping[str, JsonObject]) -> None:
    """Shadow: journal what guarded_auto would have done and match it to what people did (no execution).

    ``intents`` are the HandoffIntents listed at the start of the pass and after it: people's
    actions on one the sync has just withdrawn (its candidate is gone) still count.
    """
    names_to_ids = {name: loop_id for loop_id, name in run.loop_names.items()}
    run.shadow = shadow_ledger.run_shadow_pass(
        run.paths, run.registry, policy_state, intents.values(), names_to_ids, run.deps.clock.now()
    )


def _execute_autonomous(run: _Pass, policy_state: JsonObject, plan: JsonObject) -> None:
    """guarded_auto: execute the eligible intents through their HandoffIntent objects."""
    deps, paths = run.deps, run.paths
    ready = select_autonomous_targets(
        deps, namespace=run.namespace, name=run.name, uid=run.uid, plan=plan, loop_names=run.loop_names,
        loop_observed_at={
            loop_id: parse_ts(binding.last_reconcile_at)
            for loop_id, binding in run.index.by_id.items()
        },
        existing=run.existing,
    )  # fmt: skip
    if not ready:
        return
    key_to_intent = {
        str(i["idempotencyKey"]): str(i["intentId"])
        for i in plan.get("intents") or []
        if isinstance(i, Mapping)
    }
    runner = build_autonomous_runner(
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
    write_ledger(
        paths, read_ledger(paths) | {str(r.get("idempotencyKey")) for r in results if isinstance(r, Mapping)}
    )
    run.existing = list_intent_bodies(deps, run.namespace, run.name, run.uid)


def _build_status(run: _Pass) -> JsonObject:
    """The Fleet status from the pass's states, the status surface and the promotion decision."""
    now = run.deps.clock.now()
    surface = fleet_commands.build_status_surface(
        run.paths, run.registry, run.fleet_state, now=now,
        policy_state=run.policy_state, handoff_state=run.handoff_state,
        latest_fleet_telemetry=rollup.build_fleet_telemetry_row(run.fleet_state),  # as appended
    )  # fmt: skip
    promotion_state = files.read_json(run.paths.registry_file.parent / PROMOTION_STATE_FILE)
    objects = {
        intent_id: {"name": object_meta(b).get("name"), "phase": read_phase(b)}
        for intent_id, b in run.existing.items()
    }
    return fleet_resource.build_fleet_status(
        previous=run.previous, generation=run.generation, now=now, fleet_state=run.fleet_state,
        fleet_status_surface=surface, handoff_state=run.handoff_state, loop_names=run.loop_names,
        intent_objects=objects, handoff_pacing=run.pacing,
        promotion_state=promotion_state if isinstance(promotion_state, Mapping) else None,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# applying a pass: the one writer of the Fleet status


def reconcile_fleet(body: Mapping[str, Any], deps: FleetPassDeps) -> FleetPassReport:
    """One pass for one Fleet, applied: its status (once, skipped when unchanged), Events, metrics,
    and the FleetPolicy posture (synchronous: runs in kopf's thread pool or the daemon's thread).
    A pass that found nothing changed (``unchanged``) writes nothing."""
    meta = object_meta(body)
    ref = fleet_ref(str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", "")))
    with deps.lock_for(ref.uid or f"{ref.namespace}/{ref.name}"):
        fresh = deps.edge.fetch_object(ref)
        if fresh is None:
            return FleetPassReport(ran=False, status={}, blocked_reason="not_found")
        previous = dict(fresh.get("status") or {})
        report = _run_guarded(fresh, previous, deps)
        if report.unchanged:
            return report
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
            generation=int(object_meta(fresh).get("generation") or 0),
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
        ref.namespace, ref.name, fleet_state=report.fleet_state, policy_state=report.policy_state,
        handoff_pacing=report.handoff_pacing,
    )  # fmt: skip
    for _, outcome in report.autonomous_outcomes:
        metrics.record_autonomous_outcome(ref.namespace, ref.name, outcome)
    fetch_suppression_metrics(deps.metrics).observe(ref.namespace, ref.name, report.policy_state)
    if report.shadow is not None:
        shadow = fetch_shadow_metrics(deps.metrics)
        shadow.record_resolutions(ref.namespace, ref.name, report.shadow.resolved_rows)
        shadow.observe_agreement(ref.namespace, ref.name, report.shadow.state["agreement"])


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
            deps.edge, deps.clock, ref.namespace, str(policy_name), report.policy_state, blocked,
            shadow=report.shadow.state if report.shadow is not None else None,
        )  # fmt: skip
    except OperatorError as exc:
        log.warning("could not write FleetPolicy %s status: %s", policy_name, exc)


def find_ready_message(status: Mapping[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return str(cond.get("message") or "")
    return ""
