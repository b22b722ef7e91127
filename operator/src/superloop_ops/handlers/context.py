"""What startup puts into kopf's ``memo`` for the Loop and HandoffIntent handlers.

Handlers never build clients themselves: they read the edges from here, so component tests can
pass an in-memory ``FleetEdge``, a frozen clock and a private metrics registry. The per-object
locks serialise the create/update handlers and the periodic daemon of one object (kopf already
serialises handlers of one object, but not a handler against a daemon). ``post_events`` is the
one best-effort Event poster every handler uses (``controllers.k8s_events``), and the fleet pass
dependencies are built from the context here, once per process (``fetch_fleet_deps``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from superloop_ops.clock import Clock
from superloop_ops.controllers import fleet_objects
from superloop_ops.controllers.k8s_events import EventSpec, post_events
from superloop_ops.core.loop.idle_pass import IdleMemo
from superloop_ops.k8s.fleet_edge import FleetEdge
from superloop_ops.metrics import OperatorMetrics
from superloop_ops.settings import Settings

__all__ = [
    "EventSpec",
    "OperatorContext",
    "build_fleet_deps",
    "fetch_context",
    "fetch_fleet_deps",
    "post_events",
]


@dataclasses.dataclass
class OperatorContext:
    settings: Settings
    edge: FleetEdge
    clock: Clock
    metrics: OperatorMetrics
    sleep: Callable[[float], None] | None = None
    runtime_command: tuple[str, ...] | None = None
    locks: dict[str, threading.Lock] = dataclasses.field(default_factory=dict)
    completed_keys: set[str] = dataclasses.field(default_factory=set)
    idle_memos: dict[str, IdleMemo] = dataclasses.field(default_factory=dict)
    _guard: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def lock_for(self, uid: str) -> threading.Lock:
        with self._guard:
            return self.locks.setdefault(uid, threading.Lock())


def fetch_context(memo: Any) -> OperatorContext:
    """The context startup stored as ``memo.operator``; a clear error if startup did not run."""
    ctx = getattr(memo, "operator", None)
    if not isinstance(ctx, OperatorContext):
        raise RuntimeError("operator context missing from memo: superloop_ops.main startup did not run")
    return ctx


def build_fleet_deps(ctx: OperatorContext, edge: FleetEdge) -> fleet_objects.FleetPassDeps:
    """The fleet pass dependencies from the operator context (shared locks, settings, clock, metrics)."""
    return fleet_objects.FleetPassDeps(
        edge=edge,
        settings=ctx.settings,
        clock=ctx.clock,
        metrics=ctx.metrics,
        lock_for=ctx.lock_for,
        sleep=ctx.sleep or _sleep,
        runtime_command=ctx.runtime_command,
    )


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def fetch_fleet_deps(memo: Any) -> fleet_objects.FleetPassDeps:
    """The Fleet, FleetPolicy, HandoffIntent hand-over and PromotionApply handlers' shared fleet deps."""
    deps = getattr(memo, "fleet_deps", None)
    if isinstance(deps, fleet_objects.FleetPassDeps):
        return deps
    ctx = fetch_context(memo)
    deps = build_fleet_deps(ctx, ctx.edge)
    memo.fleet_deps = deps
    return deps
