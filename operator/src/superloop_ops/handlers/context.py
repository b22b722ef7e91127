"""What startup puts into kopf's ``memo`` for the Loop and HandoffIntent handlers.

Handlers never build clients themselves: they read the edges from here, so component tests can
pass an in-memory ``KubeEdge``, a frozen clock and a private metrics registry. The per-object
locks serialise the create/update handlers and the periodic daemon of one object (kopf already
serialises handlers of one object, but not a handler against a daemon).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from superloop_ops.clock import Clock
from superloop_ops.k8s.edge import KubeEdge
from superloop_ops.metrics import OperatorMetrics
from superloop_ops.settings import Settings

__all__ = ["OperatorContext", "fetch_context"]


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
