"""Shadow metric families: exact samples from hand-built ledger rows and figures, bounded labels, cleanup."""

from __future__ import annotations

from typing import Any

from superloop_ops import metrics as m
from superloop_ops import metrics_shadow as ms

DECISIONS = "superloop_ops_shadow_decisions_total"
RATIO = "superloop_ops_shadow_agreement_ratio"
RESOLVED = "superloop_ops_shadow_resolved_decisions"
PENDING = "superloop_ops_shadow_pending_decisions"


def _samples(base: m.OperatorMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in base.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def _figures() -> dict[str, Any]:
    return {
        "resolved": 5, "agreed": 2, "pending": 1, "agreementRate": 0.4,
        "byIntent": {"cancel": {"resolved": 5, "agreementRate": 0.4}},
        "byReasonCode": {
            "health_critical": {"resolved": 4, "agreementRate": 0.25},
            "reconcile_failed": {"resolved": 1, "agreementRate": 1},
            "made_up_reason": {"resolved": 9, "agreementRate": 0.1},
        },
    }  # fmt: skip


def test_resolutions_count_by_bounded_decision_and_human() -> None:
    base = m.build_metrics()
    shadow = ms.fetch_shadow_metrics(base)
    rows = [
        {"decision": "execute", "human": "approved", "loopId": "loop-a", "traceId": "t-1"},
        {"decision": "execute", "human": "approved", "loopId": "loop-b"},
        {"decision": "hold", "human": "sneezed", "loopId": "loop-c"},
    ]
    shadow.record_resolutions("ns", "prod", rows)
    labels = (("fleet", "prod"), ("namespace", "ns"))
    assert _samples(base, DECISIONS) == {
        (("decision", "execute"), *labels[:1], ("human", "approved"), *labels[1:]): 2.0,
        (("decision", "hold"), *labels[:1], ("human", "other"), *labels[1:]): 1.0,
    }


def test_agreement_gauges_per_intent_and_reason_and_cleanup() -> None:
    base = m.build_metrics()
    shadow = ms.fetch_shadow_metrics(base)
    shadow.observe_agreement("ns", "prod", _figures())
    ratio = {(dict(k)["intent_type"], dict(k)["reason"]): v for k, v in _samples(base, RATIO).items()}
    assert ratio == {
        ("all", "all"): 0.4,
        ("cancel", "all"): 0.4,
        ("all", "health_critical"): 0.25,
        ("all", "reconcile_failed"): 1.0,
    }
    resolved = {(dict(k)["intent_type"], dict(k)["reason"]): v for k, v in _samples(base, RESOLVED).items()}
    assert resolved[("all", "all")] == 5.0
    assert resolved[("approve", "all")] == 0.0
    assert resolved[("all", "health_degraded")] == 0.0
    assert "made_up_reason" not in {reason for _, reason in resolved}
    assert list(_samples(base, PENDING).values()) == [1.0]
    # no rate yet (nothing resolved): the ratio series goes away instead of reporting 0
    shadow.observe_agreement("ns", "prod", {"resolved": 0, "agreementRate": None, "pending": 3})
    assert _samples(base, RATIO) == {}
    shadow.forget_fleet("ns", "prod")
    assert _samples(base, RESOLVED) == {}
    assert _samples(base, PENDING) == {}
