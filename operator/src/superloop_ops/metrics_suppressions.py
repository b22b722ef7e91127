"""Prometheus metrics of suppressions (``core.fleet.suppressions``), on the operator's registry.

Read from the policy state of each fleet pass (``suppressionState.entries``). Labels are bounded:
``namespace`` and ``fleet`` are object names; ``state``, ``scope`` and ``category`` come from
closed vocabularies. A suppression's key (a loopId) is never a label: the per-suppression figures
are in the FleetPolicy status and ``superloop-ops fleet suppressions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from superloop_ops.core.fleet.suppressions import SUPPRESSION_STATES
from superloop_ops.metrics import PREFIX, OperatorMetrics, fetch_families, remove_series
from superloop_ops.models.fleet_policy import CATEGORIES

__all__ = ["SuppressionMetrics", "fetch_suppression_metrics"]

SCOPES: tuple[str, ...] = ("loop", "global")


def _entries(policy_state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    block = policy_state.get("suppressionState")
    entries = block.get("entries") if isinstance(block, Mapping) else None
    return [e for e in entries or [] if isinstance(e, Mapping)]


class SuppressionMetrics:
    """Suppression families bound to the operator's registry."""

    def __init__(self, base: OperatorMetrics) -> None:
        registry = base.registry
        labels = ("namespace", "fleet")
        self.by_state = Gauge(
            f"{PREFIX}_fleet_suppressions",
            "Suppressions of the fleet's policy by state (pending, active, expiring, expired, unowned).",
            (*labels, "state"),
            registry=registry,
        )
        self.next_expiry = Gauge(
            f"{PREFIX}_fleet_suppression_next_expiry_seconds",
            "Seconds until the first applying suppression with an expiry expires (absent: none).",
            labels,
            registry=registry,
        )
        self.hidden = Counter(
            f"{PREFIX}_fleet_suppressed_signals",
            "Candidates hidden by a policy suppression, one per candidate per pass, by scope and category.",
            (*labels, "scope", "category"),
            registry=registry,
        )

    def observe(self, namespace: str, fleet: str, policy_state: Mapping[str, Any] | None) -> None:
        """Set the gauges and count what this pass hid."""
        if policy_state is None:
            return
        entries = _entries(policy_state)
        for state in SUPPRESSION_STATES:
            self.by_state.labels(namespace, fleet, state).set(
                sum(1 for e in entries if e.get("state") == state)
            )
        remaining = [
            int(e["expiresInSeconds"])
            for e in entries
            if e.get("applies") is True and isinstance(e.get("expiresInSeconds"), int)
        ]
        if remaining:
            self.next_expiry.labels(namespace, fleet).set(min(remaining))
        else:
            remove_series(self.next_expiry, namespace, fleet)
        for entry in entries:
            scope = entry.get("scope")
            hiding = entry.get("hidingNow")
            if scope not in SCOPES or not isinstance(hiding, Mapping):
                continue
            for category, count in hiding.items():
                if category in CATEGORIES and isinstance(count, int) and count > 0:
                    self.hidden.labels(namespace, fleet, scope, category).inc(count)

    def forget_fleet(self, namespace: str, fleet: str) -> None:
        """Drop the series of a deleted Fleet."""
        for state in SUPPRESSION_STATES:
            remove_series(self.by_state, namespace, fleet, state)
        remove_series(self.next_expiry, namespace, fleet)
        for scope in SCOPES:
            for category in CATEGORIES:
                remove_series(self.hidden, namespace, fleet, scope, category)


def fetch_suppression_metrics(base: OperatorMetrics) -> SuppressionMetrics:
    """The suppression families on ``base``'s registry, registered once per registry."""
    return fetch_families(base, SuppressionMetrics)
