"""Fleet handlers: one ``reconcile_fleet`` for create, resume, update and the periodic pass.

A pass (``controllers.fleet_controller.run_fleet_pass``) materialises inline loops as owned Loops,
reads every Loop's status into the fleet rollup, evaluates the FleetPolicy, proposes
HandoffIntents and, in ``guarded_auto``, executes the eligible ones;
``controllers.fleet_controller.reconcile_fleet`` serialises the passes of one Fleet and applies
one: the Fleet status once (skipped when unchanged), Events on transitions, the fleet metrics and
the FleetPolicy posture. This module registers the kopf handlers, runs the periodic daemon and
maps errors to kopf's retry semantics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from superloop_ops.controllers import fleet_controller, fleet_objects
from superloop_ops.controllers.fleet_objects import FLEET_MEMBERS_INDEX
from superloop_ops.core.fleet.fleet_members import LoopMember, build_loop_member
from superloop_ops.errors import DependencyNotReadyError, InvalidSpecError
from superloop_ops.handlers.context import counted_pass, fetch_context, fetch_fleet_deps, runs_fleet_kinds
from superloop_ops.k8s.edge import GROUP, VERSION
from superloop_ops.metrics_fleet import fetch_fleet_metrics
from superloop_ops.metrics_promotion import fetch_promotion_metrics
from superloop_ops.metrics_shadow import fetch_shadow_metrics
from superloop_ops.metrics_suppressions import fetch_suppression_metrics
from superloop_ops.models.common import DEFAULT_RECONCILE_INTERVAL_SECONDS

__all__ = [
    "index_fleet_members",
    "on_fleet_change",
    "on_fleet_delete",
    "on_fleet_periodic",
    "reconcile_fleet",
]

log = logging.getLogger(__name__)


def _raise_for_kopf(report: fleet_controller.FleetPassReport) -> None:
    if isinstance(report.error, InvalidSpecError):
        raise kopf.PermanentError(str(report.error))
    if isinstance(report.error, DependencyNotReadyError):
        raise kopf.TemporaryError(str(report.error), delay=report.retry_after or 15.0)


@kopf.index(GROUP, VERSION, "loops", id=FLEET_MEMBERS_INDEX, when=runs_fleet_kinds)
async def index_fleet_members(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, LoopMember]:
    """Every Loop's fleet member, kept from the watch (on the shard that runs the fleet kinds):
    fleet passes read their members here instead of LISTing the namespace. kopf starts no
    handler before this index has seen every Loop."""
    return {str(namespace or ""): build_loop_member(body)}


@counted_pass("Fleet")
def reconcile_fleet(
    body: Mapping[str, Any], deps: fleet_objects.FleetPassDeps
) -> fleet_controller.FleetPassReport:
    """One Fleet pass, counted in the pass metrics."""
    return fleet_controller.reconcile_fleet(body, deps)


@kopf.on.create(GROUP, VERSION, "fleets", when=runs_fleet_kinds)
@kopf.on.resume(GROUP, VERSION, "fleets", when=runs_fleet_kinds)
@kopf.on.update(GROUP, VERSION, "fleets", field="spec", when=runs_fleet_kinds)
def on_fleet_change(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Create, resume and spec changes: the same full pass."""
    _raise_for_kopf(reconcile_fleet(dict(body), fetch_fleet_deps(memo, kwargs)))


@kopf.daemon(GROUP, VERSION, "fleets", cancellation_timeout=10.0, when=runs_fleet_kinds)
async def on_fleet_periodic(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    """The periodic pass at ``spec.reconcileIntervalSeconds`` (sooner while loops are pending);
    a pass that finds nothing changed ends before it writes anything."""
    deps = fetch_fleet_deps(memo, kwargs)
    delay = _interval(body)
    while not stopped:
        await stopped.wait(delay)
        if stopped:
            break
        try:
            report = await asyncio.to_thread(reconcile_fleet, dict(body), deps)
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
    return float(DEFAULT_RECONCILE_INTERVAL_SECONDS)


@kopf.on.delete(GROUP, VERSION, "fleets", optional=True, when=runs_fleet_kinds)
def on_fleet_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Drop the fleet gauges; owned Loops and HandoffIntents go with the Fleet (garbage collection)."""
    meta = body.get("metadata") or {}
    metrics = fetch_context(memo).metrics
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    fetch_fleet_metrics(metrics).forget_fleet(namespace, name)
    fetch_promotion_metrics(metrics).forget_fleet(namespace, name)
    fetch_suppression_metrics(metrics).forget_fleet(namespace, name)
    fetch_shadow_metrics(metrics).forget_fleet(namespace, name)
