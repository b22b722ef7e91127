"""What startup puts into kopf's ``memo`` for the Loop and HandoffIntent handlers.

Handlers never build clients themselves: they read the edges from here, so component tests can
pass an in-memory ``FleetEdge``, a frozen clock and a private metrics registry. The per-object
locks serialise the create/update handlers and the scheduled periodic pass of one object (kopf
serialises handlers of one object, but knows nothing of the scheduler's passes). ``post_events`` is the
one best-effort Event poster every handler uses (``controllers.k8s_events``), and the fleet pass
dependencies are built from the context here, once per process (``fetch_fleet_deps``).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from superloop_ops.clock import Clock
from superloop_ops.controllers import fleet_objects
from superloop_ops.controllers.k8s_events import EventSpec, post_events
from superloop_ops.controllers.loop_pass_pool import LoopPassPool
from superloop_ops.controllers.loop_scheduler import PassScheduler
from superloop_ops.controllers.remediation_journal import new_trace_id
from superloop_ops.core.common.shards import Shard
from superloop_ops.core.loop.idle_pass import IdleMemo
from superloop_ops.core.loop.remediation import RemediationMark
from superloop_ops.k8s.fleet_edge import FleetEdge
from superloop_ops.metrics import OperatorMetrics
from superloop_ops.settings import Settings

__all__ = [
    "EventSpec",
    "OperatorContext",
    "PassOwner",
    "build_fleet_deps",
    "counted_pass",
    "fetch_context",
    "fetch_fleet_deps",
    "fetch_scheduler",
    "fetch_shard",
    "loop_name_of",
    "owns_intent_loop",
    "owns_loop",
    "post_events",
    "runs_fleet_kinds",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


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
    new_trace_id: Callable[[], str] = new_trace_id
    """Where a Loop pass's trace id comes from when no remediation is open (tests inject one)."""
    idle_memos: dict[str, IdleMemo] = dataclasses.field(default_factory=dict)
    remediation_marks: dict[str, RemediationMark] = dataclasses.field(default_factory=dict)
    """The remediation (trace id, state) this process last wrote into each Loop's status: a watched
    body whose own differs may be older than that write (``handlers.loop``)."""
    scheduler: PassScheduler | None = None
    """The periodic Loop passes' scheduler (``controllers.loop_scheduler``), started by startup."""
    pass_pool: LoopPassPool | None = None
    """Worker processes for passes with a large backlog (``controllers.loop_pass_pool``); None:
    every pass runs in its thread (``SUPERLOOP_LOOP_PASS_PROCESSES=0``)."""
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


def fetch_scheduler(ctx: OperatorContext) -> PassScheduler:
    """The Loop pass scheduler startup started; a clear error if it did not."""
    if ctx.scheduler is None:
        raise RuntimeError("Loop pass scheduler missing: superloop_ops.main startup did not start it")
    return ctx.scheduler


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


def fetch_fleet_deps(
    memo: Any, handler_kwargs: Mapping[str, Any] | None = None
) -> fleet_objects.FleetPassDeps:
    """The Fleet, FleetPolicy, HandoffIntent hand-over and PromotionApply handlers' shared fleet deps.

    ``handler_kwargs`` are the calling handler's keyword arguments: kopf hands every handler its
    indices there, and the Loop members' index (``FLEET_MEMBERS_INDEX``) becomes ``deps.members``.
    """
    deps = getattr(memo, "fleet_deps", None)
    if not isinstance(deps, fleet_objects.FleetPassDeps):
        ctx = fetch_context(memo)
        deps = build_fleet_deps(ctx, ctx.edge)
        memo.fleet_deps = deps
    index = (handler_kwargs or {}).get(fleet_objects.FLEET_MEMBERS_INDEX)
    if index is not None:
        deps.members = index
    return deps


def fetch_shard(memo: Any) -> Shard:
    """This replica's shard (``SUPERLOOP_SHARD``); the whole cluster when startup stored no context."""
    ctx = getattr(memo, "operator", None)
    return ctx.settings.shard if isinstance(ctx, OperatorContext) else Shard()


def loop_name_of(intent: Mapping[str, Any]) -> str:
    """The name of a HandoffIntent's Loop (``spec.loopRef.name``; empty when it has none)."""
    return str(((intent.get("spec") or {}).get("loopRef") or {}).get("name", ""))


def owns_loop(body: Mapping[str, Any], memo: Any, **_: Any) -> bool:
    """kopf ``when`` filter: this replica's shard owns the Loop (``SUPERLOOP_SHARD``)."""
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    return fetch_shard(memo).owns(namespace, name, meta.get("labels"))


def owns_intent_loop(body: Mapping[str, Any], memo: Any, **_: Any) -> bool:
    """kopf ``when`` filter: a HandoffIntent goes to the shard of its Loop (its own shard label
    pins it, as the Loop's does)."""
    meta = body.get("metadata") or {}
    return fetch_shard(memo).owns(str(meta.get("namespace", "")), loop_name_of(body), meta.get("labels"))


def runs_fleet_kinds(memo: Any, **_: Any) -> bool:
    """kopf ``when`` filter: the fleet kinds run on shard 0 only (one rollup across shards)."""
    return fetch_shard(memo).runs_fleet_kinds


class PassOwner(Protocol):
    """What a counted pass reads from its second argument (the operator context or a kind's deps)."""

    @property
    def metrics(self) -> OperatorMetrics: ...
    @property
    def clock(self) -> Clock: ...


_O = TypeVar("_O", bound=PassOwner)


def counted_pass(
    kind: str,
) -> Callable[
    [Callable[Concatenate[Mapping[str, Any], _O, _P], _R]],
    Callable[Concatenate[Mapping[str, Any], _O, _P], _R],
]:
    """Count every call of a kind's ``reconcile_*(body, ctx_or_deps, ...)`` as one pass in the metrics.

    A pass fails when it raises or when its report carries an ``error``; a successful one also
    stamps the kind's last-success time.
    """

    def wrap(
        reconcile: Callable[Concatenate[Mapping[str, Any], _O, _P], _R],
    ) -> Callable[Concatenate[Mapping[str, Any], _O, _P], _R]:
        @functools.wraps(reconcile)
        def run(body: Mapping[str, Any], owner: _O, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            namespace = str((body.get("metadata") or {}).get("namespace", ""))
            try:
                result = reconcile(body, owner, *args, **kwargs)
            except BaseException:
                owner.metrics.record_pass(kind, namespace, ok=False, at=owner.clock.now().timestamp())
                raise
            ok = getattr(result, "error", None) is None
            owner.metrics.record_pass(kind, namespace, ok=ok, at=owner.clock.now().timestamp())
            return result

        return run

    return wrap
