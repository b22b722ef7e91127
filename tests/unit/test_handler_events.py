"""``post_events``: the one best-effort Event poster of every handler (a refused Event is logged,
never raised, and the remaining Events are still posted)."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from superloop_ops.core.fleet.fleet_resource import FleetEvent
from superloop_ops.core.promotion.promotion_apply_resource import PromotionEvent
from superloop_ops.errors import DependencyNotReadyError
from superloop_ops.handlers.context import post_events
from superloop_ops.k8s.edge import KubeEdge, ObjectRef

REF = ObjectRef(kind="Fleet", plural="fleets", namespace="ns", name="prod")


class _Edge:
    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.posted: list[tuple[str, str, str, str]] = []

    def post_event(self, ref: ObjectRef, event_type: str, reason: str, message: str) -> None:
        if reason == self.refuse:
            raise DependencyNotReadyError("apiserver busy", delay=1.0)
        self.posted.append((ref.name, event_type, reason, message))


def test_a_refused_event_is_logged_and_the_rest_are_posted(caplog: pytest.LogCaptureFixture) -> None:
    edge = _Edge(refuse="IntentProposed")
    log = logging.getLogger("superloop_ops.controllers.fleet_controller")
    events: list[Any] = [
        FleetEvent("Warning", "IntentProposed", "HandoffIntent a proposed"),
        PromotionEvent("Normal", "PromotionApplied", "expand: canaryPercent 25 -> 50"),
    ]
    with caplog.at_level(logging.WARNING):
        post_events(cast(KubeEdge, edge), REF, events, log)
    assert edge.posted == [("prod", "Normal", "PromotionApplied", "expand: canaryPercent 25 -> 50")]
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (
            "superloop_ops.controllers.fleet_controller",
            "could not post Event IntentProposed for ns/prod: apiserver busy",
        )
    ]
