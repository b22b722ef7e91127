"""Suppression metric families: exact samples from a hand-built policy state, bounded labels, cleanup."""

from __future__ import annotations

from typing import Any

from helpers.metric_samples import Labels, collect_samples
from superloop_ops import metrics as m
from superloop_ops import metrics_suppressions as ms


def _samples(base: m.OperatorMetrics, name: str) -> dict[Labels, float]:
    return collect_samples(base.registry, name)


def _row(key: str, state: str, hiding: dict[str, int], expires_in: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": key,
        "scope": "global" if key == "*" else "loop",
        "state": state,
        "applies": state in ("active", "expiring", "unowned"),
        "hidingNow": hiding,
    }
    if expires_in is not None:
        row["expiresInSeconds"] = expires_in
    return row


def _state(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"suppressionState": {"entries": list(rows)}}


def test_states_next_expiry_and_hidden_signals_are_exact_and_keys_never_labels() -> None:
    base = m.build_metrics()
    fam = ms.fetch_suppression_metrics(base)
    policy_state = _state(
        _row("*", "expiring", {"health_degraded": 3}, 600),
        _row("loop-a", "active", {"reconcile_failed": 1, "health_critical": 0}, 7200),
        _row("loop-b", "expired", {"health_critical": 0}, 0),
        _row("loop-c", "unowned", {"health_critical": 2}),
        _row("loop-d", "active", {"disk_full": 9}, 9000),  # unknown category: not counted
    )
    fam.observe("ns", "prod", policy_state)
    fam.observe("ns", "prod", policy_state)
    states = {dict(k)["state"]: v for k, v in _samples(base, "superloop_ops_fleet_suppressions").items()}
    assert states == {"pending": 0, "active": 2, "expiring": 1, "expired": 1, "unowned": 1}
    assert _samples(base, "superloop_ops_fleet_suppression_next_expiry_seconds") == {
        (("fleet", "prod"), ("namespace", "ns")): 600
    }
    hidden = {
        (dict(k)["scope"], dict(k)["category"]): v
        for k, v in _samples(base, "superloop_ops_fleet_suppressed_signals_total").items()
    }
    assert hidden == {
        ("global", "health_degraded"): 6,
        ("loop", "reconcile_failed"): 2,
        ("loop", "health_critical"): 4,
    }
    for name in ("superloop_ops_fleet_suppressions", "superloop_ops_fleet_suppressed_signals_total"):
        for labels in _samples(base, name):
            assert {k for k, _ in labels} <= {"namespace", "fleet", "state", "scope", "category"}


def test_no_applying_expiry_drops_the_next_expiry_and_a_deleted_fleet_drops_everything() -> None:
    base = m.build_metrics()
    fam = ms.fetch_suppression_metrics(base)
    fam.observe("ns", "prod", _state(_row("loop-a", "active", {"health_critical": 1}, 60)))
    fam.observe("ns", "prod", _state(_row("loop-a", "expired", {"health_critical": 0}, 0)))
    assert _samples(base, "superloop_ops_fleet_suppression_next_expiry_seconds") == {}
    fam.observe("ns", "prod", None)  # a pass without a policy changes nothing
    assert sum(_samples(base, "superloop_ops_fleet_suppressions").values()) == 1
    fam.forget_fleet("ns", "prod")
    assert _samples(base, "superloop_ops_fleet_suppressions") == {}
    assert _samples(base, "superloop_ops_fleet_suppressed_signals_total") == {}
