"""Promotion metric families: exact samples, closed label vocabularies, one registration per
registry, cleanup of a deleted Fleet. The component test ``test_promotion_drill_evidence`` drives
the same families through real PromotionApply evaluations."""

from __future__ import annotations

from superloop_ops import metrics as m
from superloop_ops import metrics_promotion as mp

APPLIES = "superloop_ops_promotion_applies_total"
DECISION = "superloop_ops_promotion_decision"
Labels = tuple[tuple[str, str], ...]


def _samples(base: m.OperatorMetrics, name: str) -> dict[Labels, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in base.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def _apply_labels(fleet: str, intent: str, outcome: str) -> Labels:
    return (("fleet", fleet), ("intent", intent), ("namespace", "ns"), ("outcome", outcome))


def test_applies_are_counted_by_intent_and_final_outcome() -> None:
    base = m.build_metrics()
    metrics = mp.fetch_promotion_metrics(base)
    for intent, outcome in [
        ("expand", "rejected"),
        ("expand", "rejected"),
        ("expand", "applied"),
        ("rollback", "applied"),
        ("rollback", "replayed"),
        ("resume", "dry_run"),
        ("expand", "pending"),  # retried later: not a final outcome, not counted
        ("grow", "applied"),  # an intent outside the vocabulary
    ]:
        metrics.record_apply("ns", "canary", intent, outcome)
    assert _samples(base, APPLIES) == {
        _apply_labels("canary", "expand", "rejected"): 2.0,
        _apply_labels("canary", "expand", "applied"): 1.0,
        _apply_labels("canary", "rollback", "applied"): 1.0,
        _apply_labels("canary", "rollback", "replayed"): 1.0,
        _apply_labels("canary", "resume", "dry_run"): 1.0,
        _apply_labels("canary", "other", "applied"): 1.0,
    }


def test_decision_gauge_follows_the_last_decision_and_ignores_no_decision() -> None:
    base = m.build_metrics()
    metrics = mp.fetch_promotion_metrics(base)
    key = (("fleet", "canary"), ("namespace", "ns"))
    metrics.observe_decision("ns", "canary", "hold")
    assert _samples(base, DECISION) == {key: 0.0}
    metrics.observe_decision("ns", "canary", "promote")
    assert _samples(base, DECISION) == {key: 1.0}
    for nothing in (None, "", "maybe", 1):
        metrics.observe_decision("ns", "canary", nothing)
    assert _samples(base, DECISION) == {key: 1.0}
    metrics.observe_decision("ns", "other-fleet", "hold")
    metrics.forget_fleet("ns", "canary")
    metrics.forget_fleet("ns", "never-seen")
    assert _samples(base, DECISION) == {(("fleet", "other-fleet"), ("namespace", "ns")): 0.0}


def test_families_register_once_per_registry() -> None:
    base = m.build_metrics()
    assert mp.fetch_promotion_metrics(base) is mp.fetch_promotion_metrics(base)
    assert mp.fetch_promotion_metrics(m.build_metrics()) is not mp.fetch_promotion_metrics(base)
