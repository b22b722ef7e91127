"""What startup puts into kopf's ``memo`` for the Loop and HandoffIntent handlers.

Handlers never build clients themselves: they read the edges from here, so component tests can
pass an in-memory ``KubeEdge``, a frozen clock and a private metrics registry. The per-object
locks serialise the create/update handlers and the periodic daemon of one object (kopf already
serialises handlers of one object, but not a handler against a daemon). ``post_events`` is the
one best-effort Event poster every handler uses.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from superloop_ops.clock import Clock
from superloop_ops.errors import OperatorError
from superloop_ops.k8s.edge import KubeEdge, ObjectRef
from superloop_ops.metrics import OperatorMetrics
from superloop_ops.settings import Settings

__all__ = ["EventSpec", "OperatorContext", "counted_pass", "fetch_context", "post_events"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class EventSpec(Protocol):
    """A Kubernetes Event a controller's pure part asks for (each kind has its own dataclass)."""

    @property
    def type(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


@dataclasses.dataclass
class OperatorContext:
    settings: Settings
    edge: KubeEdge
    clock: Clock
    metrics: OperatorMetrics
    sleep: Callable[[float], None] | None = None
    runtime_command: tuple[str, ...] | None = None
    locks: dict[str, threading.Lock] = dataclasses.field(default_factory=dict)
    completed_keys: set[str] = dataclasses.field(default_factory=set)
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


def post_events(edge: KubeEdge, ref: ObjectRef, events: Iterable[EventSpec], log: logging.Logger) -> None:
    """Post each Event on ``ref``; best effort (they expire, the status already says it): log, never raise."""
    for event in events:
        try:
            edge.post_event(ref, event.type, event.reason, event.message)
        except OperatorError as exc:
            log.warning("could not post Event %s for %s/%s: %s", event.reason, ref.namespace, ref.name, exc)


def counted_pass(
    kind: str,
) -> Callable[
    [Callable[Concatenate[Mapping[str, Any], OperatorContext, _P], _R]],
    Callable[Concatenate[Mapping[str, Any], OperatorContext, _P], _R],
]:
    """Count every call of a kind's ``reconcile_*(body, ctx, ...)`` as one pass in the metrics.

    A pass fails when it raises or when its report carries an ``error``; a successful one also
    stamps the kind's last-success time.
    """

    def wrap(
        reconcile: Callable[Concatenate[Mapping[str, Any], OperatorContext, _P], _R],
    ) -> Callable[Concatenate[Mapping[str, Any], OperatorContext, _P], _R]:
        @functools.wraps(reconcile)
        def run(body: Mapping[str, Any], ctx: OperatorContext, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            namespace = str((body.get("metadata") or {}).get("namespace", ""))
            try:
                result = reconcile(body, ctx, *args, **kwargs)
            except BaseException:
                ctx.metrics.record_pass(kind, namespace, ok=False, at=ctx.clock.now().timestamp())
                raise
            ok = getattr(result, "error", None) is None
            ctx.metrics.record_pass(kind, namespace, ok=ok, at=ctx.clock.now().timestamp())
            return result

        return run

    return wrap
