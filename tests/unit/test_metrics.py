"""Operator metrics: registry content, bounded labels, exposition over HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from superloop_ops import metrics as m


def _samples(metrics: m.OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_registry_is_explicit_and_per_instance() -> None:
    one, two = m.build_metrics(), m.build_metrics()
    one.observe_loop(m.LoopObservation("ns", "a", health_status="healthy"))
    assert any(name == "superloop_ops_loop_health_status" for name, _ in _samples(one))
    assert not any(name == "superloop_ops_loop_health_status" for name, _ in _samples(two))


def test_loop_observation_exports_one_hot_enums_and_gauges() -> None:
    metrics = m.build_metrics()
    metrics.observe_loop(
        m.LoopObservation(
            "ns",
            "loop-a",
            health_status="critical",
            reason_codes=("transport_unreachable", "trace-1234-not-a-code"),
            lifecycle_state="running",
            ingest_lag_seconds=12,
            heartbeat_lag_seconds=3,
            transport_failure_streak=4,
            diverged=False,
        )
    )
    s = _samples(metrics)
    base = (("loop", "loop-a"), ("namespace", "ns"))
    assert s[("superloop_ops_loop_health_status", (*base, ("status", "critical")))] == 1
    assert s[("superloop_ops_loop_health_status", (*base, ("status", "healthy")))] == 0
    assert s[("superloop_ops_loop_lifecycle_state", (*base, ("state", "running")))] == 1
    assert s[("superloop_ops_loop_ingest_lag_seconds", base)] == 12
    assert s[("superloop_ops_loop_transport_failure_streak", base)] == 4
    assert s[("superloop_ops_loop_diverged", base)] == 0
    reason_labels = {
        dict(labels)["reason"] for name, labels in s if name == "superloop_ops_loop_health_reason"
    }
    # an unknown code (which could carry a trace id) collapses to "other"
    assert reason_labels == {"transport_unreachable", "other"}


def test_labels_stay_bounded() -> None:
    metrics = m.build_metrics()
    for i in range(50):
        metrics.record_control_outcome("ns", "loop", "cancel", f"status-{i}")
        metrics.record_reconcile_error("ns", "loop", f"trace-{i}")
    s = _samples(metrics)
    statuses = {
        dict(labels)["status"] for name, labels in s if name == "superloop_ops_control_outcomes_total"
    }
    reasons = {dict(labels)["reason"] for name, labels in s if name == "superloop_ops_reconcile_errors_total"}
    assert statuses == {"other"}
    assert reasons == {"other"}
    metrics.record_control_outcome("ns", "loop", "approve", "executed")
    assert (
        _samples(metrics)[
            (
                "superloop_ops_control_outcomes_total",
                (("intent", "approve"), ("loop", "loop"), ("namespace", "ns"), ("status", "executed")),
            )
        ]
        == 1
    )


def test_unknown_values_drop_series_and_forget_loop() -> None:
    metrics = m.build_metrics()
    metrics.observe_loop(
        m.LoopObservation(
            "ns", "a", ingest_lag_seconds=5, health_status="degraded", reason_codes=("ingest_stale",)
        )
    )
    metrics.observe_loop(m.LoopObservation("ns", "a", ingest_lag_seconds=None, health_status="healthy"))
    names = {name for name, _ in _samples(metrics)}
    assert "superloop_ops_loop_ingest_lag_seconds" not in names
    assert "superloop_ops_loop_health_reason" not in names
    metrics.forget_loop("ns", "a")
    assert "superloop_ops_loop_health_status" not in {name for name, _ in _samples(metrics)}


def test_reconcile_histogram() -> None:
    metrics = m.build_metrics()
    metrics.observe_reconcile_duration("ns", 0.3)
    s = _samples(metrics)
    assert s[("superloop_ops_reconcile_duration_seconds_count", (("namespace", "ns"),))] == 1
    assert s[("superloop_ops_reconcile_duration_seconds_bucket", (("le", "0.5"), ("namespace", "ns")))] == 1


def test_last_pass_time_per_loop_until_forgotten() -> None:
    metrics = m.build_metrics()
    metrics.record_loop_pass("ns", "a", 1_700_000_000.0)
    key = ("superloop_ops_loop_last_pass_timestamp_seconds", (("loop", "a"), ("namespace", "ns")))
    assert _samples(metrics)[key] == 1_700_000_000.0
    metrics.forget_loop("ns", "a")
    assert key not in _samples(metrics)


def test_http_endpoint_serves_the_registry_and_passes_promtool() -> None:
    metrics = m.build_metrics()
    metrics.observe_loop(m.LoopObservation("ns", "a", health_status="healthy", lifecycle_state="idle"))
    metrics.record_control_outcome("ns", "a", "cancel", "executed")
    metrics.observe_reconcile_duration("ns", 1.0)
    server = m.start_metrics_server(metrics, 0, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read()
    finally:
        server.stop()
    assert b"superloop_ops_loop_health_status" in body
    promtool = shutil.which("promtool")
    if promtool is None:
        # CI installs it (make tools); only a developer's ad-hoc run may lack it.
        assert not os.environ.get("CI"), "promtool missing in CI: scripts/install-tools.sh installs it"
        pytest.skip("promtool not installed (scripts/install-tools.sh installs Debian's prometheus)")
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()


def test_run_outcome_and_usage_per_role_with_bounded_labels() -> None:
    metrics = m.build_metrics()
    usage = {
        "calls": 5,
        "costUsd": 0.1,
        "byRole": {
            "planner": {"calls": 2, "inputTokens": 2400, "outputTokens": 600, "costUsd": 0.02},
            "reviewer": {"calls": 1, "inputTokens": 3100, "outputTokens": 400, "costUsd": 0.05},
            "trace-1234-not-a-role": {"calls": 2, "inputTokens": 10, "costUsd": 0.03},
        },
    }
    metrics.observe_loop(
        m.LoopObservation(
            "ns",
            "loop-a",
            reason_codes=("run_dead",),
            health_status="critical",
            run_outcome="dead",
            usage=usage,
        )
    )
    s = _samples(metrics)
    base = (("loop", "loop-a"), ("namespace", "ns"))
    assert s[("superloop_ops_loop_run_outcome", (*base, ("outcome", "dead")))] == 1
    assert s[("superloop_ops_loop_run_outcome", (*base, ("outcome", "running")))] == 0
    assert s[("superloop_ops_loop_health_reason", (*base, ("reason", "run_dead")))] == 1
    assert s[("superloop_ops_loop_role_calls", (*base, ("role", "planner")))] == 2
    assert s[("superloop_ops_loop_cost_usd", (*base, ("role", "reviewer")))] == pytest.approx(0.05)
    assert s[("superloop_ops_loop_tokens", (("kind", "input"), *base, ("role", "planner")))] == 2400
    assert s[("superloop_ops_loop_tokens", (("kind", "output"), *base, ("role", "reviewer")))] == 400
    assert s[("superloop_ops_loop_role_calls", (*base, ("role", "other")))] == 2  # unknown role folded
    roles = {dict(labels)["role"] for name, labels in s if name == "superloop_ops_loop_cost_usd"}
    assert roles == {"planner", "reviewer", "other"}
    metrics.forget_loop("ns", "loop-a")
    assert not any(
        name.startswith(("superloop_ops_loop_tokens", "superloop_ops_loop_run_outcome"))
        for name, _ in _samples(metrics)
    )


def test_build_info_names_the_running_version() -> None:
    from superloop_ops import __version__

    s = _samples(m.build_metrics())
    (labels,) = [dict(lbl) for name, lbl in s if name == "superloop_ops_build_info"]
    assert labels["version"] == __version__
    assert labels["python_version"].count(".") == 2


def test_counters_have_no_created_series() -> None:
    metrics = m.build_metrics()
    metrics.record_control_outcome("ns", "a", "cancel", "executed")
    metrics.record_pass("Fleet", "ns", ok=True, at=10.0)
    metrics.observe_reconcile_duration("ns", 1.0)
    body = metrics.render().decode()
    assert "superloop_ops_control_outcomes_total" in body
    assert "_created" not in body


def test_passes_are_counted_for_every_kind_and_success_is_stamped() -> None:
    metrics = m.build_metrics()
    for kind in m.KINDS:
        metrics.record_pass(kind, "ns", ok=True, at=100.0)
    metrics.record_pass("Fleet", "ns", ok=False, at=200.0)
    metrics.record_pass("NoSuchKind", "ns", ok=True, at=300.0)
    s = _samples(metrics)
    for kind in m.KINDS:
        labels = (("kind", kind), ("namespace", "ns"), ("result", "success"))
        assert s[("superloop_ops_reconcile_passes_total", labels)] == 1
    failed = (("kind", "Fleet"), ("namespace", "ns"), ("result", "error"))
    assert s[("superloop_ops_reconcile_passes_total", failed)] == 1
    # a failed pass leaves the last success where it was
    last = "superloop_ops_last_successful_pass_timestamp_seconds"
    assert s[(last, (("kind", "Fleet"), ("namespace", "ns")))] == 100
    assert s[(last, (("kind", "other"), ("namespace", "ns")))] == 300


def test_intents_awaiting_approval_are_listed_and_counted() -> None:
    metrics = m.build_metrics()
    metrics.observe_intent("ns", "i1", "loop-a", 1000.0)
    metrics.observe_intent("ns", "i2", "loop-b", 2000.0)
    metrics.observe_intent("other-ns", "i3", "loop-c", 3000.0)
    s = _samples(metrics)
    since = "superloop_ops_intent_awaiting_approval_since_timestamp_seconds"
    assert s[(since, (("intent", "i1"), ("loop", "loop-a"), ("namespace", "ns")))] == 1000
    assert s[("superloop_ops_intents_awaiting_approval", (("namespace", "ns"),))] == 2
    metrics.observe_intent("ns", "i1", "loop-a", None)  # approved, executed or deleted
    s = _samples(metrics)
    assert (since, (("intent", "i1"), ("loop", "loop-a"), ("namespace", "ns"))) not in s
    assert s[("superloop_ops_intents_awaiting_approval", (("namespace", "ns"),))] == 1
    assert s[("superloop_ops_intents_awaiting_approval", (("namespace", "other-ns"),))] == 1
