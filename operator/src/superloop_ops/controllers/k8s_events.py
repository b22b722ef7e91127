"""The one best-effort Kubernetes Event poster every controller and handler uses."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from superloop_ops.errors import OperatorError
from superloop_ops.k8s.edge import KubeEdge, ObjectRef

__all__ = ["EventSpec", "post_events"]


class EventSpec(Protocol):
    """A Kubernetes Event a controller's pure part asks for (each kind has its own dataclass)."""

    @property
    def type(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


def post_events(edge: KubeEdge, ref: ObjectRef, events: Iterable[EventSpec], log: logging.Logger) -> None:
    """Post each Event on ``ref``; best effort (they expire, the status already says it): log, never raise."""
    for event in events:
        try:
            edge.post_event(ref, event.type, event.reason, event.message)
        except OperatorError as exc:
            log.warning("could not post Event %s for %s/%s: %s", event.reason, ref.namespace, ref.name, exc)
