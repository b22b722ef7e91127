"""Glue between a PromotionApply object, its Fleet's FleetPolicy and the fleet journal: one evaluation.

Where things live: the fleet journal of the Fleet named by ``fleetRef``
(``<state>/<namespace>/.superloop/ops-manager/fleet/<fleet>/``, see ``controllers.fleet_controller``)
holds the promotion decision (``promotion-state.json``), the apply state
(``promotion-apply-state.json``) and the apply telemetry (``telemetry/promotion-apply.jsonl``),
so the runbook's ``jq`` recipes work on it. The posture moves in FleetPolicy
``status.effectiveRollout``; the next fleet pass builds the registry from it.

The decision: the injectable ``DecisionSource`` returns the promotion decision document (the
gates' output, ``summary.decision``). The default, ``evaluate_promotion_gates``, runs the
promotion engine's five gates at evaluation time over the Fleet's own journal (the fleet status
surface, ``telemetry/handoff.jsonl``, ``drills/promotion.v1.json``) with the PromotionApply's uid
as trace id, and persists the document as the gates do (``promotion-state.json`` plus a
``telemetry/promotion.jsonl`` line), so the decision an apply saw is audited next to its record.
When the FleetPolicy names a drill evidence ConfigMap (``spec.promotion.drillEvidenceConfigMapRef``)
the drills come from it instead of the journal file (``controllers.drill_evidence``).
A stale decision is never used. ``fetch_promotion_state`` (read the state file only) is the
alternative for a journal whose decision is produced elsewhere. No decision (no fleet pass yet)
blocks ``expand``/``resume`` and never a rollback.

Exactly once, across restarts: the apply record's ``traceId`` is the PromotionApply's uid. An
apply writes, in order, (1) a pending marker holding the record, (2) the FleetPolicy posture
naming this object in ``lastApply``, (3) the journal (state file + telemetry line), then drops
the marker, then (4) writes the PromotionApply status. A restart after (3) finds the record by
trace id; after (2) finds the marker and the posture naming this object, and finishes (3); after
(1) only, the posture was never moved, so the marker is discarded and the evaluation starts over.
A second object with the same ``idempotencyKey`` finds the journal record and replays it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from superloop_ops.clock import Clock
from superloop_ops.controllers import drill_evidence, fleet_controller, fleet_objects, fleet_policy_controller
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.promotion import apply_rules, promotion_apply_resource
from superloop_ops.engine.fleet import fleet_commands, shadow_ledger
from superloop_ops.engine.promotion import promotion_commands
from superloop_ops.errors import ContractError, InvalidSpecError
from superloop_ops.journal import files
from superloop_ops.k8s.edge import ObjectRef
from superloop_ops.k8s.fleet_edge import FleetEdge
from superloop_ops.models.fleet import Fleet
from superloop_ops.models.fleet_policy import FleetPolicy
from superloop_ops.models.promotion_apply import PromotionApply
from superloop_ops.settings import Settings

__all__ = [
    "DecisionSource",
    "PromotionDeps",
    "PromotionPaths",
    "PromotionReport",
    "build_promotion_paths",
    "evaluate_promotion_gates",
    "fetch_promotion_state",
    "promotion_ref",
    "run_promotion_apply",
]

PENDING_FILE = "promotion-apply-pending.json"


@dataclasses.dataclass(frozen=True)
class PromotionPaths:
    """The promotion files of one Fleet's journal (reference names, one directory per Fleet)."""

    fleet: fleet_commands.FleetPaths
    base: Path
    registry_file: Path
    promotion_state_file: Path
    promotion_telemetry_file: Path
    drill_state_file: Path
    apply_state_file: Path
    apply_telemetry_file: Path
    pending_file: Path

    def record_files(self) -> JsonObject:
        """The ``files`` block of an apply record."""
        return {
            "registryFile": str(self.registry_file),
            "promotionStateFile": str(self.promotion_state_file),
            "applyStateFile": str(self.apply_state_file),
            "applyTelemetryFile": str(self.apply_telemetry_file),
        }


class DecisionSource(Protocol):
    """``(paths, clock, trace_id, drills=...)`` -> the decision document (``summary.decision``), or None.

    ``drills`` is the drill evidence read from the FleetPolicy's ConfigMap (None: use the
    journal's drill file).
    """

    def __call__(
        self,
        paths: PromotionPaths,
        clock: Clock,
        trace_id: str,
        /,
        *,
        drills: promotion_commands.DrillEvidenceText | None = None,
    ) -> Mapping[str, Any] | None: ...


def build_promotion_paths(settings: Settings, namespace: str, fleet_name: str) -> PromotionPaths:
    fleet = fleet_objects.build_fleet_paths(settings, namespace, fleet_name)
    base = fleet.registry_file.parent
    return PromotionPaths(
        fleet=fleet,
        base=base,
        registry_file=fleet.registry_file,
        promotion_state_file=base / fleet_controller.PROMOTION_STATE_FILE,
        promotion_telemetry_file=base / "telemetry" / "promotion.jsonl",
        drill_state_file=base / "drills" / "promotion.v1.json",
        apply_state_file=base / "promotion-apply-state.json",
        apply_telemetry_file=base / "telemetry" / "promotion-apply.jsonl",
        pending_file=base / PENDING_FILE,
    )


def fetch_promotion_state(
    paths: PromotionPaths,
    clock: Clock,
    trace_id: str,
    *,
    drills: promotion_commands.DrillEvidenceText | None = None,
) -> Mapping[str, Any] | None:
    """The last decision document in the fleet journal; None when missing or invalid."""
    value = files.read_json(paths.promotion_state_file)
    return value if isinstance(value, Mapping) else None


def evaluate_promotion_gates(
    paths: PromotionPaths,
    clock: Clock,
    trace_id: str,
    *,
    drills: promotion_commands.DrillEvidenceText | None = None,
) -> Mapping[str, Any] | None:
    """The five gates now, over this Fleet's journal; None when the Fleet has no pass recorded yet."""

    def fleet_status(_repo: Path) -> Any:
        return fleet_commands.run_fleet_status(paths.fleet, clock=clock)

    options = promotion_commands.GatesOptions(
        repo=paths.fleet.repo,
        handoff_telemetry_file=str(paths.fleet.handoff_telemetry_file),
        drill_state_file=str(paths.drill_state_file),
        promotion_state_file=str(paths.promotion_state_file),
        promotion_telemetry_file=str(paths.promotion_telemetry_file),
        trace_id=trace_id,
        registry_file=str(paths.registry_file),
        shadow_state_file=str(shadow_ledger.shadow_state_file(paths.fleet)),
    )
    try:
        evaluation = promotion_commands.run_promotion_gates(
            options, status_producer=fleet_status, clock=clock, drill_evidence=drills
        )
    except ContractError:
        return None
    return evaluation.document


@dataclasses.dataclass
class PromotionDeps:
    """What one evaluation needs from its surroundings (the handler passes the operator's)."""

    edge: FleetEdge
    settings: Settings
    clock: Clock
    decision_source: DecisionSource = evaluate_promotion_gates


@dataclasses.dataclass(frozen=True)
class PromotionReport:
    """What one evaluation decided; ``status`` is written by the caller, ``retry_after`` asks again."""

    phase: str
    status: Mapping[str, Any]
    moved: bool = False
    fleet_name: str | None = None
    policy_name: str | None = None
    retry_after: float | None = None


def promotion_ref(namespace: str, name: str, uid: str = "") -> ObjectRef:
    return ObjectRef(
        kind="PromotionApply", plural="promotionapplies", namespace=namespace, name=name, uid=uid
    )


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _request(obj: PromotionApply, now: dt.datetime) -> promotion_apply_resource.OperatorRequest:
    spec = obj.spec
    return promotion_apply_resource.build_operator_request(
        intent=spec.intent,
        expand_step=spec.expand_step,
        by=spec.governance.by,
        approval_ref=spec.governance.approval_ref,
        rationale=spec.governance.rationale,
        review_by=spec.governance.review_by,
        review_within_days=spec.governance.review_within_days,
        idempotency_key=spec.idempotency_key,
        dry_run=spec.dry_run,
        now=now,
    )


def _decision_of(document: Mapping[str, Any] | None) -> tuple[str | None, list[str]]:
    summary = (document or {}).get("summary")
    if not isinstance(summary, Mapping):
        return None, []
    decision = summary.get("decision")
    codes = summary.get("reasonCodes")
    return (
        str(decision) if decision not in (None, False, "") else None,
        [str(c) for c in codes] if isinstance(codes, list) else [],
    )


class _Evaluation:
    """One evaluation of one PromotionApply (keeps the gathered facts together)."""

    def __init__(self, body: Mapping[str, Any], deps: PromotionDeps) -> None:
        meta = _meta(body)
        self.deps = deps
        self.namespace = str(meta.get("namespace", ""))
        self.name = str(meta.get("name", ""))
        self.uid = str(meta.get("uid", ""))
        self.generation = int(meta.get("generation") or 1)
        self.previous: JsonObject = dict(body.get("status") or {})
        self.body = body
        self.now = deps.clock.now()

    def status(self, phase: str, **kwargs: Any) -> JsonObject:
        return promotion_apply_resource.build_promotion_status(
            previous=self.previous, generation=self.generation, now=self.now, phase=phase, **kwargs
        )

    def report(self, phase: str, *, retry_after: float | None = None, **kwargs: Any) -> PromotionReport:
        fields = {k: v for k, v in kwargs.items() if k in ("moved", "fleet_name", "policy_name")}
        status_args = {k: v for k, v in kwargs.items() if k not in fields}
        return PromotionReport(
            phase=phase, status=self.status(phase, **status_args), retry_after=retry_after, **fields
        )


def run_promotion_apply(body: Mapping[str, Any], deps: PromotionDeps) -> PromotionReport:
    """Evaluate one PromotionApply once; the caller writes ``report.status`` and posts Events.

    The caller holds the Fleet's lock (the fleet pass writes the same FleetPolicy status), so at
    most one apply per Fleet is between its marker and its journal line at any time.
    """
    ev = _Evaluation(body, deps)
    if ev.previous.get("phase") in promotion_apply_resource.TERMINAL_PHASES or "record" in ev.previous:
        return PromotionReport(phase=str(ev.previous.get("phase")), status=ev.previous)
    try:
        obj = PromotionApply.from_body(body)
    except InvalidSpecError as exc:
        return ev.report(
            promotion_apply_resource.REJECTED,
            decision=None,
            reason_codes=[promotion_apply_resource.CODE_INVALID_SPEC],
            message=str(exc),
        )
    request = _request(obj, ev.now)
    fleet_name = obj.spec.fleet_ref.name
    fleet_body = deps.edge.fetch_object(fleet_objects.fleet_ref(ev.namespace, fleet_name))
    if fleet_body is None:
        return ev.report(
            promotion_apply_resource.PENDING,
            decision=None,
            reason_codes=[promotion_apply_resource.CODE_FLEET_NOT_FOUND],
            message=f"Fleet {fleet_name} not found",
            retry_after=30.0,
        )
    try:
        fleet = Fleet.from_body(fleet_body)
    except InvalidSpecError as exc:
        return ev.report(
            promotion_apply_resource.PENDING,
            decision=None,
            reason_codes=[promotion_apply_resource.CODE_FLEET_NOT_FOUND],
            message=str(exc),
            retry_after=60.0,
        )
    paths = build_promotion_paths(deps.settings, ev.namespace, fleet_name)
    policy_name = fleet.spec.policy_ref.name if fleet.spec.policy_ref is not None else None
    policy_body = (
        deps.edge.fetch_object(fleet_policy_controller.policy_ref(ev.namespace, policy_name))
        if policy_name
        else None
    )
    _settle_pending(paths, policy_body)
    rows = files.read_jsonl(paths.apply_telemetry_file)
    own = promotion_apply_resource.find_record(rows, trace_id=ev.uid) if ev.uid else None
    if own is not None:  # applied before a restart: finish the status only
        return ev.report(
            promotion_apply_resource.APPLIED,
            decision=own.get("decision"),
            review_by=(own.get("governance") or {}).get("reviewBy"),
            record=own,
            fleet_name=fleet_name,
            policy_name=policy_name,
        )
    if policy_name and policy_body is None:
        return ev.report(
            promotion_apply_resource.PENDING,
            decision=None,
            reason_codes=[promotion_apply_resource.CODE_POLICY_NOT_FOUND],
            message=f"FleetPolicy {policy_name} (policyRef of Fleet {fleet_name}) not found",
            retry_after=30.0,
        )
    policy: FleetPolicy | None = None
    if policy_body is not None:
        try:
            policy = FleetPolicy.from_body(policy_body)
        except InvalidSpecError as exc:
            return ev.report(
                promotion_apply_resource.PENDING,
                decision=None,
                reason_codes=[promotion_apply_resource.CODE_POLICY_NOT_FOUND],
                message=str(exc),
                retry_after=60.0,
            )
    drills = drill_evidence.fetch_drill_evidence(deps.edge, ev.namespace, policy)
    decision, gate_codes = _decision_of(
        deps.decision_source(paths, deps.clock, ev.uid or ev.name, drills=drills)
    )
    review_by = request.apply.review_by
    verdict = promotion_apply_resource.decide_apply(request.apply, decision=decision, now=ev.now)
    if verdict.action == "reject":
        codes = [str(verdict.reason_code)]
        if verdict.reason_code == promotion_apply_resource.CODE_DECISION_NOT_PROMOTE:
            codes += gate_codes
        return ev.report(
            promotion_apply_resource.REJECTED,
            decision=decision,
            reason_codes=codes,
            message=verdict.message,
            review_by=review_by,
            fleet_name=fleet_name,
        )
    guarded = policy is not None and policy_body is not None and policy.spec.mode == "guarded_auto"
    policy_generation = int(_meta(policy_body or {}).get("generation") or 1)
    policy_status = (policy_body or {}).get("status")
    effective = policy_status.get("effectiveRollout") if isinstance(policy_status, Mapping) else None
    posture = None
    if guarded and policy is not None:
        rollout = policy.spec.autonomous.rollout
        posture = promotion_apply_resource.compute_current_posture(
            spec_canary_percent=rollout.canary_percent,
            spec_manual_pause=rollout.pause.manual,
            effective=effective if isinstance(effective, Mapping) else None,
            generation=policy_generation,
        )
    apply_id = promotion_apply_resource.compute_apply_id(ev.name, ev.uid)
    try:
        outcome = apply_rules.compute_promotion_apply(
            request=request.apply,
            decision=decision,
            posture=posture,
            fleet_id=fleet.spec.fleet_id or fleet_name,
            trace_id=ev.uid or apply_id,
            now=ev.now,
            prior_records=rows,
            files=paths.record_files(),
        )
    except ContractError:  # no replay and no posture to move: the policy is not guarded_auto
        return ev.report(
            promotion_apply_resource.REJECTED,
            decision=decision,
            reason_codes=[promotion_apply_resource.CODE_MODE_NOT_GUARDED_AUTO],
            message="promotion apply requires policy.mode guarded_auto",
            review_by=review_by,
            fleet_name=fleet_name,
            policy_name=policy_name,
        )
    record = outcome.record
    if request.dry_run:
        what = (
            "would replay an earlier apply"
            if outcome.replayed
            else promotion_apply_resource.describe_record(record)
        )
        return ev.report(
            promotion_apply_resource.DRY_RUN,
            decision=decision,
            reason_codes=[promotion_apply_resource.CODE_DRY_RUN],
            review_by=review_by,
            message=f"dry run, not applied: {what}",
            fleet_name=fleet_name,
            policy_name=policy_name,
        )
    if outcome.replayed:
        files.write_json_atomic(paths.apply_state_file, record)
        return ev.report(
            promotion_apply_resource.REPLAYED,
            decision=decision,
            reason_codes=[promotion_apply_resource.CODE_REPLAYED],
            review_by=review_by,
            record=record,
            fleet_name=fleet_name,
            message=(
                f"idempotency key {request.apply.idempotency_key} already applied"
                f" at {record.get('timestamp')} (traceId {record.get('traceId')});"
                " replayed, posture not moved"
            ),
        )
    files.write_json_atomic(paths.pending_file, {"applyId": apply_id, "record": record})
    new_effective = promotion_apply_resource.build_effective_rollout(
        record, generation=policy_generation, apply_id=apply_id
    )
    fleet_policy_controller.write_effective_rollout(
        deps.edge,
        fleet_policy_controller.policy_ref(ev.namespace, str(policy_name)),
        policy_status if isinstance(policy_status, Mapping) else None,
        new_effective,
    )
    _journal(paths, record)
    return ev.report(
        promotion_apply_resource.APPLIED,
        decision=decision,
        review_by=review_by,
        record=record,
        fleet_name=fleet_name,
        policy_name=policy_name,
        moved=True,
    )


def _journal(paths: PromotionPaths, record: Mapping[str, Any]) -> None:
    """Apply state file, one telemetry line, then the pending marker goes."""
    files.write_json_atomic(paths.apply_state_file, record)
    files.append_jsonl(paths.apply_telemetry_file, [dict(record)])
    paths.pending_file.unlink(missing_ok=True)


def _settle_pending(paths: PromotionPaths, policy_body: Mapping[str, Any] | None) -> None:
    """An apply interrupted after its marker: journal it if the posture names it, else forget it.

    Runs first in every evaluation for the Fleet, so whichever PromotionApply looks next settles
    the interrupted one (which then finds its record by trace id).
    """
    marker = files.read_json(paths.pending_file)
    if marker is None:
        paths.pending_file.unlink(missing_ok=True)
        return
    record = marker.get("record") if isinstance(marker, Mapping) else None
    status = (policy_body or {}).get("status")
    effective = status.get("effectiveRollout") if isinstance(status, Mapping) else None
    moved = isinstance(effective, Mapping) and effective.get("lastApply") == marker.get("applyId")
    if isinstance(record, Mapping) and moved:
        _journal(paths, record)
    else:
        paths.pending_file.unlink(missing_ok=True)
