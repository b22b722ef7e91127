"""Telemetry summary rules (§2): counts, rates, percentiles, confidence, recommendation, rationale."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superloop_ops.core.tuning import telemetry_summary

NOW = dt.datetime(2026, 2, 22, 10, 5, tzinfo=dt.UTC)
SOURCE = telemetry_summary.SummarySource(
    repo_path="/abs/repo",
    loop_id="demo-loop",
    reconcile_telemetry_file="/abs/repo/rec.jsonl",
    control_telemetry_file="/abs/repo/ctl.jsonl",
    window=50,
)


def _row(status: str, health: str, codes: list[str], duration: object = 1) -> dict[str, object]:
    return {"status": status, "healthStatus": health, "healthReasonCodes": codes, "durationSeconds": duration}


def summarise(rec: list[object], ctl: list[object] | None = None) -> dict[str, object]:
    return telemetry_summary.build_telemetry_summary(rec, ctl or [], source=SOURCE, now=NOW)


def test_recommends_relaxed_for_high_critical_and_failed_rates() -> None:
    """Port of bats: telemetry summary recommends relaxed for high critical and failed rates."""
    rows: list[object] = [
        _row("failed", "critical", ["transport_unreachable"], 3),
        _row("failed", "critical", ["transport_unreachable"], 4),
        _row("success", "degraded", ["ingest_stale"], 2),
        _row("success", "healthy", [], 1),
    ]
    summary = summarise(rows)
    assert summary["recommendedProfile"] == "relaxed"
    assert summary["confidence"] == "low"
    assert summary["rationale"] == telemetry_summary.RATIONALES["relaxed"]
    observed = summary["observed"]
    assert isinstance(observed, dict)
    assert observed["reconcileAttempts"] == 4
    assert observed["reconcileSuccessCount"] == 2
    assert observed["reconcileFailedCount"] == 2
    assert observed["health"] == {
        "degradedCount": 1,
        "criticalCount": 2,
        "degradedRate": 0.25,
        "criticalRate": 0.5,
        "reasonCodeFrequency": [
            {"code": "transport_unreachable", "count": 2},
            {"code": "ingest_stale", "count": 1},
        ],
    }
    assert observed["durationSeconds"] == {"p50": 2, "p95": 3, "max": 4}
    assert summary["source"] == {
        "repoPath": "/abs/repo",
        "loopId": "demo-loop",
        "reconcileTelemetryFile": "/abs/repo/rec.jsonl",
        "controlTelemetryFile": "/abs/repo/ctl.jsonl",
        "window": 50,
    }
    assert summary["generatedAt"] == "2026-02-22T10:05:00Z"


def test_recommends_strict_for_stable_healthy_window() -> None:
    """Port of bats: 40 healthy successes give strict with medium confidence."""
    summary = summarise([_row("success", "healthy", []) for _ in range(40)])
    assert summary["recommendedProfile"] == "strict"
    assert summary["confidence"] == "medium"
    assert summary["rationale"] == telemetry_summary.RATIONALES["strict"]


def test_empty_window_keeps_balanced_with_zero_rates() -> None:
    summary = summarise([])
    assert summary["recommendedProfile"] == "balanced"
    assert summary["rationale"] == "No telemetry window yet; keep balanced defaults"
    observed = summary["observed"]
    assert isinstance(observed, dict)
    assert observed["health"]["degradedRate"] == 0
    assert observed["durationSeconds"] == {"p50": None, "p95": None, "max": None}


def test_ambiguous_control_blocks_strict() -> None:
    rows: list[object] = [_row("success", "healthy", []) for _ in range(10)]
    controls: list[object] = [{"status": "ambiguous"}, {"reasonCode": "control_ambiguous"}, {"status": "ok"}]
    summary = summarise(rows, controls)
    assert summary["recommendedProfile"] == "balanced"
    assert summary["rationale"] == "Observed mixed signals; keep balanced thresholds"
    observed = summary["observed"]
    assert isinstance(observed, dict)
    assert observed["control"] == {"ambiguousCount": 2}


@pytest.mark.parametrize(
    ("attempts", "expected"), [(0, "low"), (29, "low"), (30, "medium"), (99, "medium"), (100, "high")]
)
def test_confidence_depends_only_on_attempts(attempts: int, expected: str) -> None:
    assert telemetry_summary.compute_confidence(attempts) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((10, 0.2, 0.0, 0.0, 0), "relaxed"),
        ((10, 0.0, 0.0, 0.25, 0), "relaxed"),
        ((10, 0.0, 0.05, 0.02, 0), "strict"),
        ((10, 0.0, 0.06, 0.0, 0), "balanced"),
        ((10, 0.1, 0.0, 0.0, 0), "balanced"),
        ((10, 0.0, 0.0, 0.0, 1), "balanced"),
    ],
)
def test_recommendation_rules_first_match_wins(
    args: tuple[int, float, float, float, int], expected: str
) -> None:
    assert telemetry_summary.compute_recommendation(*args) == expected


def test_percentile_uses_floor_index_of_sorted_list() -> None:
    assert telemetry_summary.compute_percentile([4, 2, 3], 0.50) == 3
    assert telemetry_summary.compute_percentile([4, 2, 3], 0.95) == 3
    assert telemetry_summary.compute_percentile([], 0.5) is None
    assert telemetry_summary.compute_percentile([1.5, 2.5], 0.95) == 1.5


def test_reason_code_ties_break_by_descending_code() -> None:
    rows: list[object] = [
        {"healthReasonCodes": ["a", "b", "transport_unreachable"]},
        {"healthReasonCodes": ["a", "b", "transport_unreachable", "ingest_stale"]},
    ]
    observed = summarise(rows)["observed"]
    assert isinstance(observed, dict)
    codes = [item["code"] for item in observed["health"]["reasonCodeFrequency"]]
    assert codes == ["transport_unreachable", "b", "a", "ingest_stale"]


def test_durations_accept_numeric_strings_and_skip_other_values() -> None:
    rows: list[object] = [
        {"durationSeconds": "4"},
        {"durationSeconds": 2},
        {"durationSeconds": True},
        {"durationSeconds": "slow"},
        {"durationSeconds": None},
        {},
    ]
    observed = summarise(rows)["observed"]
    assert isinstance(observed, dict)
    assert observed["durationSeconds"] == {"p50": 2, "p95": 2, "max": 4}


def test_object_reason_codes_and_non_object_records_are_ignored() -> None:
    rows: list[object] = [{"healthReasonCodes": {"x": "ingest_stale"}}, 7, "text", ["list"]]
    summary = summarise(rows)
    observed = summary["observed"]
    assert isinstance(observed, dict)
    assert observed["reconcileAttempts"] == 1
    assert observed["health"]["reasonCodeFrequency"] == []


def test_integral_rates_are_emitted_as_integers() -> None:
    observed = summarise([_row("failed", "critical", [])])["observed"]
    assert isinstance(observed, dict)
    assert observed["health"]["criticalRate"] == 1
    assert isinstance(observed["health"]["criticalRate"], int)


_record = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["success", "failed", "other"]),
        "healthStatus": st.sampled_from(["healthy", "degraded", "critical"]),
        "healthReasonCodes": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
        "durationSeconds": st.one_of(st.integers(0, 100), st.floats(0, 100), st.text(max_size=3), st.none()),
    },
)


@given(st.lists(_record, max_size=60))
def test_summary_invariants(records: list[dict[str, object]]) -> None:
    summary = summarise(list(records))
    observed = summary["observed"]
    assert isinstance(observed, dict)
    attempts = observed["reconcileAttempts"]
    assert attempts == len(records)
    assert observed["reconcileSuccessCount"] + observed["reconcileFailedCount"] <= attempts
    health = observed["health"]
    assert 0 <= health["degradedRate"] <= 1
    assert 0 <= health["criticalRate"] <= 1
    codes = [record.get("healthReasonCodes") for record in records]
    expected = sum(len(value) for value in codes if isinstance(value, list))
    assert sum(item["count"] for item in health["reasonCodeFrequency"]) == expected
    durations = observed["durationSeconds"]
    if durations["max"] is not None:
        assert durations["p50"] <= durations["p95"] <= durations["max"]
    assert summary["recommendedProfile"] in telemetry_summary.RECOMMENDABLE_PROFILES
