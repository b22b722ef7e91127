"""Prometheus metrics of the operator, on an explicit registry.

Everything lives on one ``CollectorRegistry`` owned by an ``OperatorMetrics`` object that
startup puts into ``memo``: no metric is global, so tests build their own registry and the
process serves exactly what it registered. Labels are bounded: ``namespace`` and ``loop``
(objects the user created), ``reason`` (a reason code from the spec's closed catalogue, or the
fixed ``other``), ``intent`` and ``status`` from closed vocabularies. Trace ids, idempotency keys
and free text never become labels.

Enumerated values (health status, lifecycle state) are exported the way kube-state-metrics does:
one series per possible value, 1 for the current one, so a dashboard can sum or alert on them
without string parsing. Counters carry no ``_created`` companion series (prometheus_client's
``disable_created_metrics``): they double the series count and no query here uses them.
docs/metrics.md lists every family.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from superloop_ops import __version__

__all__ = [
    "ALERT_DELIVERY_OUTCOMES",
    "ALERT_SINK_TYPES",
    "CONTROL_STATUSES",
    "HEALTH_STATUSES",
    "KINDS",
    "LIFECYCLE_STATES",
    "REASON_CODES",
    "RUN_OUTCOMES",
    "USAGE_ROLES",
    "USAGE_TOKEN_KINDS",
    "LoopObservation",
    "MetricsServer",
    "OperatorMetrics",
    "bound_label",
    "build_metrics",
    "fetch_families",
    "remove_series",
    "start_metrics_server",
]

PREFIX = "superloop_ops"

HEALTH_STATUSES: tuple[str, ...] = ("healthy", "degraded", "critical")
LIFECYCLE_STATES: tuple[str, ...] = (
    "unknown",
    "idle",
    "running",
    "awaiting_approval",
    "complete",
    "failed",
    "stopped",
)
REASON_CODES: frozenset[str] = frozenset(
    {
        "divergence_detected",
        "control_ambiguous",
        "control_failed_command",
        "ingest_stale",
        "runtime_heartbeat_stale",
        "transport_unreachable",
        "ordering_drift_detected",
        "invalid_transport_payload",
        "projection_failed",
        "reconcile_failed",
        "invalid_artifact",
        "artifact_invalid",
        "cursor_invalid",
        "journal_unwritable",
        "snapshot_unavailable",
        "events_unavailable",
        "service_request_failed",
        "service_response_invalid",
        "source_not_found",
        "secret_not_found",
        "secret_not_opted_in",
        "invalid_spec",
        "dependency_not_ready",
        "internal_error",
        "approval_waiting",
        "run_dead",
        "run_failed",
        "run_timed_out",
        "run_rate_limited",
        "run_stuck",
        "run_max_iterations",
        "run_stopped",
        "run_cancelled",
    }
)
RUN_OUTCOMES: tuple[str, ...] = (
    "unknown",
    "idle",
    "running",
    "awaiting_approval",
    "complete",
    "dead",
    "cancelled",
    "timed_out",
    "failed",
    "max_iterations",
    "stuck",
    "rate_limited",
    "stopped",
)
USAGE_ROLES: tuple[str, ...] = ("planner", "implementer", "tester", "reviewer")
# usage.jsonl token kinds (runtime_signals.USAGE_TOKEN_KEYS camel names -> label values).
USAGE_TOKEN_KINDS: dict[str, str] = {
    "inputTokens": "input",
    "outputTokens": "output",
    "thinkingTokens": "thinking",
    "cacheReadInputTokens": "cache_read",
    "cacheCreationInputTokens": "cache_creation",
}
CONTROL_INTENTS: frozenset[str] = frozenset({"cancel", "approve", "reject"})
CONTROL_STATUSES: frozenset[str] = frozenset(
    {"executed", "executed_unconfirmed", "execution_ambiguous", "execution_failed"}
)
ALERT_SINK_TYPES: frozenset[str] = frozenset({"webhook", "slack", "pagerduty_events", "alertmanager"})
KINDS: tuple[str, ...] = ("Loop", "Fleet", "FleetPolicy", "HandoffIntent", "PromotionApply")
PASS_RESULTS: tuple[str, ...] = ("success", "error")
# "success", or the sink reason code of tuning §5.5.
ALERT_DELIVERY_OUTCOMES: frozenset[str] = frozenset(
    {
        "success",
        "http_error",
        "request_failed",
        "missing_secret",
        "unsupported_sink_type",
        "invalid_sink_result",
        "sink_dispatch_failed",
    }
)
_OTHER = "other"
# Process-wide in prometheus_client: no ``<counter>_created`` series from any registry here.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
_LABEL_VALUE = re.compile(r"\A[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")


def bound_label(value: object, allowed: Iterable[str]) -> str:
    """``value`` as a label value when it is one of ``allowed``, else ``other`` (bounded labels)."""
    return value if isinstance(value, str) and value in allowed else _OTHER


def _object_name(value: str) -> str:
    """Kubernetes object names are already bounded; anything else collapses to ``other``."""
    return value if _LABEL_VALUE.match(value) else _OTHER


@dataclasses.dataclass(frozen=True)
class LoopObservation:
    """What one reconcile pass tells the metrics about a loop (None = not known)."""

    namespace: str
    loop: str
    health_status: str | None = None
    reason_codes: tuple[str, ...] = ()
    lifecycle_state: str | None = None
    ingest_lag_seconds: float | None = None
    heartbeat_lag_seconds: float | None = None
    transport_failure_streak: int | None = None
    diverged: bool | None = None
    run_outcome: str | None = None
    usage: Mapping[str, Any] | None = None
    """``signals.usage`` of the state: totals and ``byRole`` (calls, tokens by kind, costUsd)."""


class OperatorMetrics:
    """All metric families of the operator, bound to ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        loop_labels = ("namespace", "loop")
        self.health_status = Gauge(
            f"{PREFIX}_loop_health_status",
            "Current health status of a loop: 1 for the current status, 0 for the others.",
            (*loop_labels, "status"),
            registry=self.registry,
        )
        self.health_reason = Gauge(
            f"{PREFIX}_loop_health_reason",
            "1 when the reason code is part of the loop's current health.",
            (*loop_labels, "reason"),
            registry=self.registry,
        )
        self.lifecycle_state = Gauge(
            f"{PREFIX}_loop_lifecycle_state",
            "Projected lifecycle state of a loop: 1 for the current state, 0 for the others.",
            (*loop_labels, "state"),
            registry=self.registry,
        )
        self.ingest_lag = Gauge(
            f"{PREFIX}_loop_ingest_lag_seconds",
            "Seconds since the last runtime event of a loop (health metric ingestLagSeconds).",
            loop_labels,
            registry=self.registry,
        )
        self.heartbeat_lag = Gauge(
            f"{PREFIX}_loop_heartbeat_lag_seconds",
            "Runtime heartbeat lag of a loop in seconds (health metric heartbeatLagSeconds).",
            loop_labels,
            registry=self.registry,
        )
        self.transport_failure_streak = Gauge(
            f"{PREFIX}_loop_transport_failure_streak",
            "Consecutive failed ingests of a loop.",
            loop_labels,
            registry=self.registry,
        )
        self.diverged = Gauge(
            f"{PREFIX}_loop_diverged",
            "1 when the runtime artifacts of a loop contradict each other.",
            loop_labels,
            registry=self.registry,
        )
        self.last_pass = Gauge(
            f"{PREFIX}_loop_last_pass_timestamp_seconds",
            "Unix time of the latest reconcile pass of a loop (the status is written only on change).",
            loop_labels,
            registry=self.registry,
        )
        self.idle_passes = Counter(
            f"{PREFIX}_loop_idle_passes",
            "Periodic Loop passes that found no artifact changed and nothing due (a few stat() calls).",
            ("namespace",),
            registry=self.registry,
        )
        self.run_outcome = Gauge(
            f"{PREFIX}_loop_run_outcome",
            "How the loop's run stands (running, dead, complete, cancelled, timed_out, ...): 1 for the "
            "current outcome, 0 for the others.",
            (*loop_labels, "outcome"),
            registry=self.registry,
        )
        usage_labels = (*loop_labels, "role")
        self.usage_calls = Gauge(
            f"{PREFIX}_loop_role_calls",
            "Agent role calls recorded in the loop's usage.jsonl, by role.",
            usage_labels,
            registry=self.registry,
        )
        self.usage_tokens = Gauge(
            f"{PREFIX}_loop_tokens",
            "Tokens the loop's agent calls used (usage.jsonl), by role and kind.",
            (*usage_labels, "kind"),
            registry=self.registry,
        )
        self.usage_cost = Gauge(
            f"{PREFIX}_loop_cost_usd",
            "Cost in USD of the loop's agent calls as the runtime priced them (usage.jsonl), by role.",
            usage_labels,
            registry=self.registry,
        )
        self.control_outcomes = Counter(
            f"{PREFIX}_control_outcomes",
            "Control intents executed by the operator, by outcome.",
            ("namespace", "loop", "intent", "status"),
            registry=self.registry,
        )
        self.approvals_lapsed = Counter(
            f"{PREFIX}_approvals_lapsed",
            "HandoffIntent approvals not executed because they were older than the policy's age limit.",
            ("namespace", "loop"),
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Wall time of one Loop reconcile pass.",
            ("namespace",),
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=self.registry,
        )
        self.alert_deliveries = Counter(
            f"{PREFIX}_alert_deliveries",
            "Alert deliveries to sinks (one per escalation and sink), by sink type and outcome.",
            ("namespace", "sink_type", "outcome"),
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            f"{PREFIX}_reconcile_errors",
            "Loop reconcile passes that failed, by reason code.",
            ("namespace", "loop", "reason"),
            registry=self.registry,
        )
        self._add_operator_families()

    def _add_operator_families(self) -> None:
        """Families about the operator itself and every kind: build, passes, waiting intents."""
        self.build_info = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the labels name the running operator's version and runtime.",
            ("version", "python_version"),
            registry=self.registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.reconcile_passes = Counter(
            f"{PREFIX}_reconcile_passes",
            "Reconcile passes of every kind, by result (success or error).",
            ("namespace", "kind", "result"),
            registry=self.registry,
        )
        self.last_success = Gauge(
            f"{PREFIX}_last_successful_pass_timestamp_seconds",
            "Unix time of the last successful reconcile pass of a kind in a namespace.",
            ("namespace", "kind"),
            registry=self.registry,
        )
        self.intent_waiting_since = Gauge(
            f"{PREFIX}_intent_awaiting_approval_since_timestamp_seconds",
            "Unix time since which a HandoffIntent waits for a person's approval (absent once decided).",
            ("namespace", "intent", "loop"),
            registry=self.registry,
        )
        self.intents_waiting = Gauge(
            f"{PREFIX}_intents_awaiting_approval",
            "HandoffIntents waiting for a person's approval, per namespace.",
            ("namespace",),
            registry=self.registry,
        )
        self._waiting: dict[tuple[str, str], str] = {}

    def observe_loop(self, obs: LoopObservation) -> None:
        """Export one pass's view of a loop; unknown values drop the series instead of lying."""
        ns, loop = obs.namespace, _object_name(obs.loop)
        if obs.health_status is not None:
            self._enumerate(self.health_status, ns, loop, HEALTH_STATUSES, obs.health_status)
            reasons = {bound_label(code, REASON_CODES) for code in obs.reason_codes}
            for reason in sorted(REASON_CODES | {_OTHER}):
                if reason in reasons:
                    self.health_reason.labels(ns, loop, reason).set(1.0)
                else:
                    self._remove(self.health_reason, ns, loop, reason)
        if obs.lifecycle_state is not None:
            self._enumerate(self.lifecycle_state, ns, loop, LIFECYCLE_STATES, obs.lifecycle_state)
        self._set_or_remove(self.ingest_lag, ns, loop, obs.ingest_lag_seconds)
        self._set_or_remove(self.heartbeat_lag, ns, loop, obs.heartbeat_lag_seconds)
        streak = None if obs.transport_failure_streak is None else float(obs.transport_failure_streak)
        self._set_or_remove(self.transport_failure_streak, ns, loop, streak)
        diverged = None if obs.diverged is None else (1.0 if obs.diverged else 0.0)
        self._set_or_remove(self.diverged, ns, loop, diverged)
        if obs.run_outcome is not None:
            self._enumerate(self.run_outcome, ns, loop, RUN_OUTCOMES, obs.run_outcome)
        if obs.usage is not None:
            self._observe_usage(ns, loop, obs.usage)

    def _enumerate(self, gauge: Gauge, ns: str, loop: str, values: tuple[str, ...], value: str) -> None:
        """One-hot series of an enumerated value; ``other`` exists only while the value is unknown."""
        current = bound_label(value, values)
        for candidate in (*values, _OTHER):
            if candidate == _OTHER and current != _OTHER:
                self._remove(gauge, ns, loop, _OTHER)
                continue
            gauge.labels(ns, loop, candidate).set(1.0 if candidate == current else 0.0)

    def _observe_usage(self, ns: str, loop: str, usage: Mapping[str, Any]) -> None:
        """Per role (``other`` folds roles outside the runtime's four) calls, tokens and cost."""
        totals: dict[str, dict[str, float]] = {}
        by_role = usage.get("byRole")
        for role, entry in (by_role.items() if isinstance(by_role, Mapping) else ()):
            if not isinstance(entry, Mapping):
                continue
            bucket = totals.setdefault(bound_label(str(role), USAGE_ROLES), {})
            for key in ("calls", "costUsd", *USAGE_TOKEN_KINDS):
                value = entry.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    bucket[key] = bucket.get(key, 0.0) + float(value)
        for role, bucket in totals.items():
            self.usage_calls.labels(ns, loop, role).set(bucket.get("calls", 0.0))
            self.usage_cost.labels(ns, loop, role).set(bucket.get("costUsd", 0.0))
            for key, kind in USAGE_TOKEN_KINDS.items():
                self.usage_tokens.labels(ns, loop, role, kind).set(bucket.get(key, 0.0))

    def record_control_outcome(self, namespace: str, loop: str, intent: str, status: str) -> None:
        self.control_outcomes.labels(
            namespace,
            _object_name(loop),
            bound_label(intent, CONTROL_INTENTS),
            bound_label(status, CONTROL_STATUSES),
        ).inc()

    def record_approval_lapsed(self, namespace: str, loop: str) -> None:
        """One approval that lapsed (counted once per approval, when the intent first says so)."""
        self.approvals_lapsed.labels(namespace, _object_name(loop)).inc()

    def record_alert_delivery(self, namespace: str, sink_type: str, outcome: str) -> None:
        """One sink's outcome for one escalation: ``success`` or the sink's reason code."""
        self.alert_deliveries.labels(
            namespace, bound_label(sink_type, ALERT_SINK_TYPES), bound_label(outcome, ALERT_DELIVERY_OUTCOMES)
        ).inc()

    def observe_reconcile_duration(self, namespace: str, seconds: float) -> None:
        self.reconcile_duration.labels(namespace).observe(max(0.0, seconds))

    def record_loop_pass(self, namespace: str, loop: str, at: float, *, idle: bool = False) -> None:
        """A pass of that loop ended at ``at`` (Unix seconds): how fresh its posture is. An idle
        pass (nothing new to read) is also counted."""
        self.last_pass.labels(namespace, _object_name(loop)).set(at)
        if idle:
            self.idle_passes.labels(namespace).inc()

    def record_reconcile_error(self, namespace: str, loop: str, reason: str) -> None:
        self.reconcile_errors.labels(namespace, _object_name(loop), bound_label(reason, REASON_CODES)).inc()

    def record_pass(self, kind: str, namespace: str, *, ok: bool, at: float) -> None:
        """Count one reconcile pass of ``kind``; a successful one also stamps ``at`` (Unix time)."""
        kind = bound_label(kind, KINDS)
        self.reconcile_passes.labels(namespace, kind, PASS_RESULTS[0] if ok else PASS_RESULTS[1]).inc()
        if ok:
            self.last_success.labels(namespace, kind).set(at)

    def observe_intent(self, namespace: str, intent: str, loop: str, waiting_since: float | None) -> None:
        """An intent waits for approval since ``waiting_since`` (Unix time), or no longer waits (None)."""
        key = (namespace, _object_name(intent))
        previous_loop = self._waiting.pop(key, None)
        if previous_loop is not None:
            remove_series(self.intent_waiting_since, *key, previous_loop)
        if waiting_since is not None:
            self._waiting[key] = _object_name(loop)
            self.intent_waiting_since.labels(*key, self._waiting[key]).set(waiting_since)
        count = sum(1 for ns, _ in self._waiting if ns == namespace)
        self.intents_waiting.labels(namespace).set(count)

    def forget_loop(self, namespace: str, loop: str) -> None:
        """Drop every per-loop gauge series of a deleted loop (counters keep their history)."""
        loop = _object_name(loop)
        for gauge, values in (
            (self.health_status, (*HEALTH_STATUSES, _OTHER)),
            (self.health_reason, (*sorted(REASON_CODES), _OTHER)),
            (self.lifecycle_state, (*LIFECYCLE_STATES, _OTHER)),
        ):
            for value in values:
                self._remove(gauge, namespace, loop, value)
        for gauge in (
            self.ingest_lag,
            self.heartbeat_lag,
            self.transport_failure_streak,
            self.diverged,
            self.last_pass,
        ):
            self._remove(gauge, namespace, loop)
        for value in (*RUN_OUTCOMES, _OTHER):
            self._remove(self.run_outcome, namespace, loop, value)
        for role in (*USAGE_ROLES, _OTHER):
            self._remove(self.usage_calls, namespace, loop, role)
            self._remove(self.usage_cost, namespace, loop, role)
            for kind in USAGE_TOKEN_KINDS.values():
                self._remove(self.usage_tokens, namespace, loop, role, kind)

    @staticmethod
    def _remove(gauge: Gauge, *labels: str) -> None:
        remove_series(gauge, *labels)

    def _set_or_remove(self, gauge: Gauge, ns: str, loop: str, value: float | None) -> None:
        if value is None:
            self._remove(gauge, ns, loop)
        else:
            gauge.labels(ns, loop).set(value)

    def render(self) -> bytes:
        """The text exposition format, as the HTTP endpoint serves it."""
        return prometheus_client.generate_latest(self.registry)


def build_metrics() -> OperatorMetrics:
    return OperatorMetrics(CollectorRegistry(auto_describe=True))


def remove_series(gauge: Gauge | Counter, *labels: str) -> None:
    """Drop one labelled series; a series that was never set is not an error."""
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


_F = TypeVar("_F")
_FAMILIES: weakref.WeakKeyDictionary[OperatorMetrics, dict[object, object]] = weakref.WeakKeyDictionary()
_FAMILIES_GUARD = threading.Lock()


def fetch_families(base: OperatorMetrics, build: Callable[[OperatorMetrics], _F]) -> _F:
    """The families ``build`` registers on ``base``'s registry, built once per registry.

    A registry refuses a second registration of a name, and controllers look their families up
    on every pass, so each group is built once and kept beside its registry (weakly: a test's
    registry takes its families with it).
    """
    with _FAMILIES_GUARD:
        groups = _FAMILIES.setdefault(base, {})
        found = groups.get(build)
        if found is None:
            found = build(base)
            groups[build] = found
        return cast(_F, found)


@dataclasses.dataclass(frozen=True)
class MetricsServer:
    """A running exposition endpoint; ``stop`` shuts it down (startup/cleanup pair)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(metrics: OperatorMetrics, port: int, host: str = "0.0.0.0") -> MetricsServer:
    """Serve ``metrics.registry`` over HTTP with prometheus_client's own server (port 0 = any)."""
    server, thread = prometheus_client.start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server=server, thread=thread)
