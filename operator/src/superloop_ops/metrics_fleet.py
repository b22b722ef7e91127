"""Prometheus metrics of the Fleet and FleetPolicy controllers, on the operator's registry.

Registered next to the loop metrics (``OperatorMetrics.registry``) so the one endpoint serves
both. Labels are bounded: ``namespace`` and ``fleet`` are object names; ``status``,
``category``, ``suppression`` and ``outcome`` come from closed vocabularies (anything else is
``other``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from superloop_ops.metrics import PREFIX, OperatorMetrics, bound_label, fetch_families, remove_series

__all__ = [
    "AUTONOMOUS_OUTCOMES",
    "FLEET_STATUSES",
    "FleetMetrics",
    "fetch_fleet_metrics",
]

FLEET_STATUSES: tuple[str, ...] = ("success", "partial_failure", "failed")
CATEGORIES: tuple[str, ...] = ("reconcile_failed", "health_critical", "health_degraded")
SUPPRESSIONS: tuple[str, ...] = ("none", "loop", "global", "cooldown")
AUTONOMOUS_OUTCOMES: frozenset[str] = frozenset(
    {"executed", "executed_unconfirmed", "execution_ambiguous", "execution_failed"}
)


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


class FleetMetrics:
    """Fleet metric families bound to the operator's registry."""

    def __init__(self, base: OperatorMetrics) -> None:
        registry = base.registry
        labels = ("namespace", "fleet")
        self.status = Gauge(
            f"{PREFIX}_fleet_status",
            "Fleet rollup status: 1 for the current status, 0 for the others.",
            (*labels, "status"),
            registry=registry,
        )
        self.candidates = Gauge(
            f"{PREFIX}_fleet_candidates",
            "Policy candidates of the last fleet pass by category and suppression scope.",
            (*labels, "category", "suppression"),
            registry=registry,
        )
        self.autonomous_outcomes = Counter(
            f"{PREFIX}_fleet_autonomous_executions",
            "Autonomous executions by outcome.",
            (*labels, "outcome"),
            registry=registry,
        )
        self.auto_pause = Gauge(
            f"{PREFIX}_fleet_autopause_active",
            "1 while the fleet's autonomous rollout is auto-paused.",
            labels,
            registry=registry,
        )
        self.deferred_intents = Gauge(
            f"{PREFIX}_fleet_handoff_intents_deferred",
            "Planned HandoffIntents the last fleet pass deferred (FleetPolicy handoff.maxIntentsPerPass).",
            labels,
            registry=registry,
        )
        self.kill_switch = Gauge(
            f"{PREFIX}_fleet_kill_switch",
            "1 while the fleet policy's kill switch is on.",
            labels,
            registry=registry,
        )

    def observe_fleet(
        self,
        namespace: str,
        fleet: str,
        *,
        fleet_state: Mapping[str, Any] | None,
        policy_state: Mapping[str, Any] | None,
        handoff_pacing: Mapping[str, Any] | None = None,
    ) -> None:
        """Set the gauges from the documents of one fleet pass."""
        if handoff_pacing is not None:
            deferred = handoff_pacing.get("deferredCount")
            self.deferred_intents.labels(namespace, fleet).set(deferred if isinstance(deferred, int) else 0)
        if fleet_state is not None:
            current = fleet_state.get("status")
            for status in FLEET_STATUSES:
                self.status.labels(namespace, fleet, status).set(1 if status == current else 0)
        if policy_state is None:
            return
        counts = {(c, s): 0 for c in CATEGORIES for s in SUPPRESSIONS}
        for candidate in policy_state.get("candidates") or []:
            if not isinstance(candidate, Mapping):
                continue
            category = str(candidate.get("category"))
            scope = candidate.get("suppressionScope") if candidate.get("suppressed") is True else "none"
            key = (category, str(scope))
            if key in counts:
                counts[key] += 1
        for (category, scope), value in counts.items():
            self.candidates.labels(namespace, fleet, category, scope).set(value)
        autonomous = _obj(policy_state.get("autonomous"))
        pause = _obj(_obj(autonomous.get("rollout")).get("pause"))
        self.auto_pause.labels(namespace, fleet).set(
            1 if _obj(pause.get("auto")).get("active") is True else 0
        )
        safety = _obj(_obj(autonomous.get("controls")).get("safety"))
        self.kill_switch.labels(namespace, fleet).set(1 if safety.get("killSwitch") is True else 0)

    def record_autonomous_outcome(self, namespace: str, fleet: str, outcome: str) -> None:
        self.autonomous_outcomes.labels(namespace, fleet, bound_label(outcome, AUTONOMOUS_OUTCOMES)).inc()

    def forget_fleet(self, namespace: str, fleet: str) -> None:
        """Drop the gauges of a deleted Fleet."""
        for status in FLEET_STATUSES:
            remove_series(self.status, namespace, fleet, status)
        for category in CATEGORIES:
            for scope in SUPPRESSIONS:
                remove_series(self.candidates, namespace, fleet, category, scope)
        remove_series(self.auto_pause, namespace, fleet)
        remove_series(self.kill_switch, namespace, fleet)
        remove_series(self.deferred_intents, namespace, fleet)


def fetch_fleet_metrics(base: OperatorMetrics) -> FleetMetrics:
    """The fleet families on ``base``'s registry, registered once per registry."""
    return fetch_families(base, FleetMetrics)
