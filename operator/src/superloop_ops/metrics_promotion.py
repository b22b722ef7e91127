"""Prometheus metrics of the PromotionApply controller, on the operator's registry.

Two families: a counter of PromotionApply evaluations by intent and final outcome (the phase:
``applied``, ``replayed``, ``dry_run`` or ``rejected``; a pending evaluation, retried later, is
not counted), and a gauge of the promotion decision each Fleet's gates last gave (1 for
``promote``, 0 for ``hold``). Labels are bounded: ``namespace`` and ``fleet`` are object names,
``intent`` and ``outcome`` come from closed vocabularies (anything else is ``other``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from superloop_ops.metrics import PREFIX, OperatorMetrics, bound_label, fetch_families, remove_series

__all__ = [
    "PROMOTION_INTENTS",
    "PROMOTION_OUTCOMES",
    "PromotionMetrics",
    "fetch_promotion_metrics",
]

PROMOTION_INTENTS: frozenset[str] = frozenset({"expand", "resume", "rollback"})
PROMOTION_OUTCOMES: frozenset[str] = frozenset({"applied", "replayed", "dry_run", "rejected"})
_DECISIONS = {"promote": 1, "hold": 0}


class PromotionMetrics:
    """Promotion metric families bound to the operator's registry."""

    def __init__(self, base: OperatorMetrics) -> None:
        registry = base.registry
        self.applies = Counter(
            f"{PREFIX}_promotion_applies",
            "PromotionApply evaluations by intent and outcome (applied, replayed, dry_run, rejected).",
            ("namespace", "fleet", "intent", "outcome"),
            registry=registry,
        )
        self.decision = Gauge(
            f"{PREFIX}_promotion_decision",
            "The promotion decision the fleet's gates last gave: 1 for promote, 0 for hold.",
            ("namespace", "fleet"),
            registry=registry,
        )

    def record_apply(self, namespace: str, fleet: str, intent: str, outcome: str) -> None:
        """Count one final evaluation; outcomes outside the closed set are not counted."""
        if outcome not in PROMOTION_OUTCOMES:
            return
        self.applies.labels(namespace, fleet, bound_label(intent, PROMOTION_INTENTS), outcome).inc()

    def observe_decision(self, namespace: str, fleet: str, decision: object) -> None:
        """Set the decision gauge; no decision (no fleet pass yet) leaves it as it was."""
        if isinstance(decision, str) and decision in _DECISIONS:
            self.decision.labels(namespace, fleet).set(_DECISIONS[decision])

    def forget_fleet(self, namespace: str, fleet: str) -> None:
        """Drop the decision gauge of a deleted Fleet (counters keep their history)."""
        remove_series(self.decision, namespace, fleet)


def fetch_promotion_metrics(base: OperatorMetrics) -> PromotionMetrics:
    """The promotion families on ``base``'s registry, registered once per registry."""
    return fetch_families(base, PromotionMetrics)
