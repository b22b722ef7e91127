"""PromotionApply controller: one governed move of a Fleet's effective rollout posture, once.

The evaluation (``controllers.promotion_apply_controller.run_promotion_apply``) runs under the Fleet's lock,
the lock the fleet pass holds while it writes the same FleetPolicy status, so a pass never
interleaves with a posture move. This module gathers the dependencies, writes the
PromotionApply status (the record and ``appliedAt`` once: the CRD freezes them), posts Events,
and after a move asks the Fleet for a pass so eligibility follows at once rather than at the
next interval. A missing Fleet or FleetPolicy is retried; every other outcome is final.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from superloop_ops.controllers import (
    fleet_controller,
    fleet_objects,
    fleet_policy_controller,
    promotion_apply_controller,
)
from superloop_ops.controllers.status_writes import write_status
from superloop_ops.core.promotion import promotion_apply_resource
from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError, OperatorError
from superloop_ops.handlers.context import (
    OperatorContext,
    counted_pass,
    fetch_context,
    fetch_fleet_deps,
    post_events,
    runs_fleet_kinds,
)
from superloop_ops.k8s.edge import GROUP, VERSION
from superloop_ops.metrics_promotion import fetch_promotion_metrics

__all__ = [
    "build_promotion_deps",
    "fetch_promotion_deps",
    "on_promotion_apply",
    "reconcile_promotion",
]

log = logging.getLogger(__name__)


def build_promotion_deps(
    ctx: OperatorContext, deps: fleet_objects.FleetPassDeps
) -> promotion_apply_controller.PromotionDeps:
    return promotion_apply_controller.PromotionDeps(edge=deps.edge, settings=ctx.settings, clock=ctx.clock)


def fetch_promotion_deps(memo: Any) -> promotion_apply_controller.PromotionDeps:
    deps = getattr(memo, "promotion_deps", None)
    if isinstance(deps, promotion_apply_controller.PromotionDeps):
        return deps
    deps = build_promotion_deps(fetch_context(memo), fetch_fleet_deps(memo))
    memo.promotion_deps = deps
    return deps


def _fleet_lock_key(deps: promotion_apply_controller.PromotionDeps, namespace: str, fleet_name: str) -> str:
    """The key ``controllers.fleet_controller.reconcile_fleet`` locks on (the Fleet's uid)."""
    body = deps.edge.fetch_object(fleet_objects.fleet_ref(namespace, fleet_name))
    uid = str(((body or {}).get("metadata") or {}).get("uid") or "")
    return uid or f"{namespace}/{fleet_name}"


def _observe(
    ctx: OperatorContext,
    namespace: str,
    fleet_name: str,
    body: Mapping[str, Any],
    report: promotion_apply_controller.PromotionReport,
) -> None:
    """Metrics of one evaluation: the gates' decision, and the outcome once it is final."""
    metrics = fetch_promotion_metrics(ctx.metrics)
    metrics.observe_decision(namespace, fleet_name, report.status.get("decision"))
    intent = str((body.get("spec") or {}).get("intent") or "")
    metrics.record_apply(namespace, fleet_name, intent, report.phase)


@counted_pass("PromotionApply")
def reconcile_promotion(
    body: Mapping[str, Any],
    ctx: OperatorContext,
    deps: promotion_apply_controller.PromotionDeps,
    fleet_deps: fleet_objects.FleetPassDeps | None = None,
) -> promotion_apply_controller.PromotionReport:
    """One look at a PromotionApply (synchronous); ``fleet_deps`` enables the follow-up fleet pass."""
    meta = body.get("metadata") or {}
    ref = promotion_apply_controller.promotion_ref(
        str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", ""))
    )
    fresh = deps.edge.fetch_object(ref)
    if fresh is None:
        return promotion_apply_controller.PromotionReport(phase="gone", status={})
    previous = dict(fresh.get("status") or {})
    if previous.get("phase") in promotion_apply_resource.TERMINAL_PHASES:
        return promotion_apply_controller.PromotionReport(phase=str(previous["phase"]), status=previous)
    fleet_name = str(((fresh.get("spec") or {}).get("fleetRef") or {}).get("name") or "")
    with ctx.lock_for(_fleet_lock_key(deps, ref.namespace, fleet_name)):
        again = deps.edge.fetch_object(ref)  # a concurrent look may have finished it meanwhile
        if again is None:
            return promotion_apply_controller.PromotionReport(phase="gone", status={})
        previous = dict(again.get("status") or {})
        report = promotion_apply_controller.run_promotion_apply(again, deps)
        # whole top-level fields by JSON patch: the record keeps its explicit nulls
        write_status(deps.edge, ref, previous, report.status)
        post_events(
            deps.edge, ref, promotion_apply_resource.compute_promotion_events(previous, report.status), log
        )
        if previous.get("phase") not in promotion_apply_resource.TERMINAL_PHASES:
            _observe(ctx, ref.namespace, fleet_name, again, report)
    if report.moved and report.policy_name:
        policy = fleet_policy_controller.policy_ref(ref.namespace, report.policy_name)
        record = report.status.get("record")
        message = f"PromotionApply {ref.name}: " + promotion_apply_resource.describe_record(
            record if isinstance(record, Mapping) else {}
        )
        post_events(
            deps.edge,
            policy,
            [promotion_apply_resource.PromotionEvent("Normal", "RolloutPostureChanged", message)],
            log,
        )
    if report.moved and report.fleet_name and fleet_deps is not None:
        fleet_body = deps.edge.fetch_object(fleet_objects.fleet_ref(ref.namespace, report.fleet_name))
        if fleet_body is not None:
            try:
                fleet_controller.reconcile_fleet(fleet_body, fleet_deps)
            except OperatorError as exc:  # the periodic pass picks the posture up anyway
                log.warning("fleet pass after PromotionApply %s failed: %s", ref.name, exc)
    return report


@kopf.on.create(GROUP, VERSION, "promotionapplies", when=runs_fleet_kinds)
@kopf.on.resume(GROUP, VERSION, "promotionapplies", when=runs_fleet_kinds)
def on_promotion_apply(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Evaluate once; a missing Fleet or FleetPolicy is retried, everything else is final."""
    ctx = fetch_context(memo)
    try:
        report = reconcile_promotion(
            dict(body), ctx, fetch_promotion_deps(memo), fetch_fleet_deps(memo, kwargs)
        )
    except InvalidSpecError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    except DependencyNotReadyError as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    if report.retry_after is not None:
        raise kopf.TemporaryError(str(report.status.get("message") or report.phase), delay=report.retry_after)
