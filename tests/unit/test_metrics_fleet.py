"""Fleet metric families: exact samples from hand-built pass documents, bounded labels, cleanup.

The component test ``test_fleet_handlers`` drives the same families through a real fleet pass;
here each input shape the family must tolerate (unknown categories, odd scopes, foreign
outcomes, a deleted Fleet) is checked on its own.
"""

from __future__ import annotations

from typing import Any

from superloop_ops import metrics as m
from superloop_ops import metrics_fleet as mf

CANDIDATES = "superloop_ops_fleet_candidates"
AUTONOMOUS = "superloop_ops_fleet_autonomous_executions_total"
Labels = tuple[tuple[str, str], ...]


def _samples(base: m.OperatorMetrics, name: str) -> dict[Labels, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in base.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def _candidate(category: str, scope: str | None = None, *, trace: str = "trace-9f1c") -> dict[str, Any]:
    return {
        "candidateId": f"loop-a:{category}",
        "category": category,
        "traceId": trace,
        "suppressed": scope is not None,
        "suppressionScope": scope,
    }


def _counts(base: m.OperatorMetrics, fleet: str = "prod") -> dict[tuple[str, str], float]:
    out = {}
    for labels, value in _samples(base, CANDIDATES).items():
        found = dict(labels)
        if found["fleet"] == fleet:
            out[(found["category"], found["suppression"])] = value
    return out


def test_candidates_are_counted_by_category_and_scope_with_zeros_for_the_rest() -> None:
    base = m.build_metrics()
    fleet = mf.fetch_fleet_metrics(base)
    policy_state = {
        "candidates": [
            _candidate("reconcile_failed"),
            _candidate("reconcile_failed"),
            _candidate("health_critical", "loop"),
            _candidate("health_degraded", "global"),
            _candidate("health_degraded", "cooldown"),
            # Not counted: an unknown category, an unknown scope, a non-object entry.
            _candidate("disk_full"),
            _candidate("health_critical", "tenant"),
            "loop-a:reconcile_failed",
        ]
    }
    fleet.observe_fleet("ns", "prod", fleet_state=None, policy_state=policy_state)
    counts = _counts(base)
    assert len(counts) == 3 * 4
    assert {key: value for key, value in counts.items() if value} == {
        ("reconcile_failed", "none"): 2.0,
        ("health_critical", "loop"): 1.0,
        ("health_degraded", "global"): 1.0,
        ("health_degraded", "cooldown"): 1.0,
    }
    for labels in _samples(base, CANDIDATES):
        assert {key for key, _ in labels} == {"namespace", "fleet", "category", "suppression"}
        assert "trace-9f1c" not in dict(labels).values()


def test_a_scope_on_an_unsuppressed_candidate_counts_as_none() -> None:
    """``suppressed`` decides; a stale scope on an open candidate does not move it."""
    base = m.build_metrics()
    candidate = _candidate("reconcile_failed", "loop") | {"suppressed": False}
    mf.fetch_fleet_metrics(base).observe_fleet(
        "ns", "prod", fleet_state=None, policy_state={"candidates": [candidate]}
    )
    assert _counts(base)[("reconcile_failed", "none")] == 1.0
    assert _counts(base)[("reconcile_failed", "loop")] == 0.0


def test_a_new_pass_replaces_the_counts() -> None:
    base = m.build_metrics()
    fleet = mf.fetch_fleet_metrics(base)
    many = {"candidates": [_candidate("health_critical")] * 3}
    fleet.observe_fleet("ns", "prod", fleet_state=None, policy_state=many)
    fleet.observe_fleet("ns", "prod", fleet_state=None, policy_state={"candidates": []})
    assert set(_counts(base).values()) == {0.0}


def test_autonomous_outcomes_count_per_outcome_and_foreign_values_become_other() -> None:
    base = m.build_metrics()
    fleet = mf.fetch_fleet_metrics(base)
    for outcome in ("executed", "executed", "execution_failed", "hi-7c2e0d-intent-name"):
        fleet.record_autonomous_outcome("ns", "prod", outcome)
    fleet.record_autonomous_outcome("ns", "other-fleet", "execution_ambiguous")
    assert _samples(base, AUTONOMOUS) == {
        (("fleet", "prod"), ("namespace", "ns"), ("outcome", "executed")): 2.0,
        (("fleet", "prod"), ("namespace", "ns"), ("outcome", "execution_failed")): 1.0,
        (("fleet", "prod"), ("namespace", "ns"), ("outcome", "other")): 1.0,
        (("fleet", "other-fleet"), ("namespace", "ns"), ("outcome", "execution_ambiguous")): 1.0,
    }


def test_forget_fleet_drops_its_gauges_only() -> None:
    base = m.build_metrics()
    fleet = mf.fetch_fleet_metrics(base)
    state = {"candidates": [_candidate("reconcile_failed")]}
    for name in ("prod", "stage"):
        fleet.observe_fleet("ns", name, fleet_state={"status": "success"}, policy_state=state)
    fleet.forget_fleet("ns", "prod")
    assert _counts(base, "prod") == {}
    assert _counts(base, "stage")[("reconcile_failed", "none")] == 1.0
    fleet.forget_fleet("ns", "never-seen")  # no error for a Fleet without samples


def test_families_are_registered_once_per_registry() -> None:
    base, other = m.build_metrics(), m.build_metrics()
    assert mf.fetch_fleet_metrics(base) is mf.fetch_fleet_metrics(base)
    assert mf.fetch_fleet_metrics(other) is not mf.fetch_fleet_metrics(base)
