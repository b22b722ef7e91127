"""Prometheus metrics of shadow autonomy (a Fleet whose FleetPolicy is in ``mode: shadow``).

Registered on the operator's registry beside the fleet families. Labels are bounded: ``namespace``
and ``fleet`` are object names; ``decision`` (execute, hold), ``human`` (approved, rejected,
lapsed, acted_differently), ``intent_type`` (the HandoffIntent intents) and ``reason`` (the candidate
categories) are closed vocabularies (anything else is ``other``; ``all`` is the overall figure).
Loop names and trace ids never become labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, get_args

from prometheus_client import Counter, Gauge

from superloop_ops.core.fleet.shadow_agreement import DECISIONS, HUMAN_OUTCOMES
from superloop_ops.metrics import PREFIX, OperatorMetrics, bound_label, fetch_families, remove_series
from superloop_ops.models.fleet_policy import CATEGORIES
from superloop_ops.models.handoff_intent import ControlIntent

__all__ = ["ShadowMetrics", "fetch_shadow_metrics"]

INTENTS: tuple[str, ...] = get_args(ControlIntent)
_ALL = "all"


class ShadowMetrics:
    """Shadow decision counters and the rolling agreement gauges."""

    def __init__(self, base: OperatorMetrics) -> None:
        registry = base.registry
        labels = ("namespace", "fleet")
        self.decisions = Counter(
            f"{PREFIX}_shadow_decisions",
            "Resolved shadow decisions by what autonomy would have done and what a person did.",
            (*labels, "decision", "human"),
            registry=registry,
        )
        self.agreement = Gauge(
            f"{PREFIX}_shadow_agreement_ratio",
            "Agreement of shadow decisions with people over the rolling window (per intent and reason).",
            (*labels, "intent_type", "reason"),
            registry=registry,
        )
        self.resolved = Gauge(
            f"{PREFIX}_shadow_resolved_decisions",
            "Resolved shadow decisions within the rolling window (the agreement's sample).",
            (*labels, "intent_type", "reason"),
            registry=registry,
        )
        self.pending = Gauge(
            f"{PREFIX}_shadow_pending_decisions",
            "Shadow decisions still waiting for a person's action or the end of the match window.",
            labels,
            registry=registry,
        )

    def record_resolutions(self, namespace: str, fleet: str, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            decision = bound_label(row.get("decision"), DECISIONS)
            human = bound_label(row.get("human"), HUMAN_OUTCOMES)
            self.decisions.labels(namespace, fleet, decision, human).inc()

    def observe_agreement(self, namespace: str, fleet: str, agreement: Mapping[str, Any]) -> None:
        """Set the gauges from the figures: overall (``all``/``all``), per intent and per reason."""
        self._set(namespace, fleet, _ALL, _ALL, agreement)
        for intent in INTENTS:
            self._set(namespace, fleet, intent, _ALL, (agreement.get("byIntent") or {}).get(intent))
        for reason in CATEGORIES:
            self._set(namespace, fleet, _ALL, reason, (agreement.get("byReasonCode") or {}).get(reason))
        self.pending.labels(namespace, fleet).set(int(agreement.get("pending") or 0))

    def _set(self, namespace: str, fleet: str, intent: str, reason: str, figures: Any) -> None:
        figures = figures if isinstance(figures, Mapping) else {}
        self.resolved.labels(namespace, fleet, intent, reason).set(int(figures.get("resolved") or 0))
        rate = figures.get("agreementRate")
        if isinstance(rate, int | float):
            self.agreement.labels(namespace, fleet, intent, reason).set(rate)
        else:
            remove_series(self.agreement, namespace, fleet, intent, reason)

    def forget_fleet(self, namespace: str, fleet: str) -> None:
        """Drop the gauges of a deleted Fleet."""
        pairs = [(_ALL, _ALL), *((i, _ALL) for i in INTENTS), *((_ALL, r) for r in CATEGORIES)]
        for intent, reason in pairs:
            remove_series(self.agreement, namespace, fleet, intent, reason)
            remove_series(self.resolved, namespace, fleet, intent, reason)
        remove_series(self.pending, namespace, fleet)


def fetch_shadow_metrics(base: OperatorMetrics) -> ShadowMetrics:
    """The shadow families on ``base``'s registry, registered once per registry."""
    return fetch_families(base, ShadowMetrics)
