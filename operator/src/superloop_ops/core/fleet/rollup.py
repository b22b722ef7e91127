"""Fleet reconcile: per-loop result records, the fleet rollup and its state/telemetry documents.

The fan-out itself (threads, the loop reconciler) lives in ``superloop_ops.engine.fleet.fleet_commands``; this
module only decides, from what each loop pass returned, what the fleet documents say. A loop
that failed is classified into one reason code so that triage can group failures fleet-wide
without reading each loop's output.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts

__all__ = [
    "FanOutSettings",
    "LoopRunOutcome",
    "build_fleet_state",
    "build_fleet_telemetry_row",
    "build_loop_result",
    "compute_failure_reason",
    "compute_fleet_rollup",
    "compute_loop_files",
    "compute_loop_order",
    "compute_loop_trace_id",
    "compute_output_excerpt",
    "compute_preflight_reason",
    "parse_reconciler_output",
    "sorted_unique",
]

_TRACE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_EXCERPT_LIMIT = 600
_TRANSPORT_FAILURE_CODES = ("snapshot_unavailable", "events_unavailable", "service_request_failed")
_REASON_PRIORITY = (
    "transport_unreachable",
    "invalid_transport_payload",
    "invalid_artifact",
    "cursor_invalid",
    "projection_failed",
    "reconcile_failed",
)


@dataclasses.dataclass(frozen=True)
class LoopRunOutcome:
    """What one loop-level reconcile pass returned.

    ``document`` is the pass's main JSON document: the final state on success, the health
    document on failure (``None`` when there was none). ``output`` is any captured text, used
    for the excerpt and for classifying failures that produced no document.
    """

    exit_code: int
    document: JsonObject | None = None
    output: str = ""
    trace_id: str | None = None
    """The loop's own trace id, when it has one to carry (an open remediation's); else the fleet's."""


@dataclasses.dataclass(frozen=True)
class FanOutSettings:
    """The execution knobs recorded in the fleet state."""

    max_parallel: int = 2
    deterministic_order: bool = False
    from_start: bool = False
    max_events: int | None = None


def sorted_unique(values: Sequence[str] | set[str]) -> list[str]:
    """Reason-code arrays are deduplicated and sorted by code point."""
    return sorted(set(values))


def compute_loop_trace_id(fleet_trace_id: str, loop_id: str) -> str:
    """Per-loop trace id: the fleet trace plus the loop id with unsafe characters replaced one for one."""
    return f"{fleet_trace_id}-{_TRACE_UNSAFE.sub('-', loop_id)}"


def compute_loop_order(loops: Sequence[JsonObject], deterministic: bool) -> list[JsonObject]:
    """Registry order, or ascending loopId when a deterministic order is asked for."""
    if deterministic:
        return sorted(loops, key=lambda loop: str(loop.get("loopId", "")))
    return list(loops)


def compute_loop_files(repo: str, loop_id: str) -> JsonObject:
    """Drill-down pointers to the loop-level artifacts (the loop id is not sanitised)."""
    base = f"{repo}/.superloop/ops-manager/{loop_id}"
    return {
        "stateFile": f"{base}/state.json",
        "healthFile": f"{base}/health.json",
        "cursorFile": f"{base}/cursor.json",
        "reconcileTelemetryFile": f"{base}/telemetry/reconcile.jsonl",
    }


def compute_preflight_reason(loop: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """A reason to not run the loop at all, or None.

    ``enabled: false`` really skips the loop (the reference could never skip one).
    """
    if loop.get("enabled") is False:
        return "loop_disabled"
    service = loop.get("service") or {}
    if loop.get("transport") == "sprite_service" and not service.get("baseUrl"):
        return "missing_service_base_url"
    token_env = service.get("tokenEnv")
    if token_env and not env.get(token_env):
        return "missing_service_token_env"
    return None


def parse_reconciler_output(text: str) -> JsonObject | None:
    """A JSON object from captured output: the whole text, else its last non-blank line."""
    candidates = [text]
    lines = [line for line in text.splitlines() if line.strip()]
    if lines:
        candidates.append(lines[-1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def compute_failure_reason(document: Mapping[str, Any] | None, output: str) -> str:
    """One reason code for a failed pass: reason codes, then the transport failure code, then text."""
    if document is not None:
        codes = document.get("reasonCodes")
        codes = codes if isinstance(codes, list) else []
        for reason in _REASON_PRIORITY:
            if reason in codes:
                return reason
        transport = document.get("transport")
        failure_code = transport.get("failureCode") if isinstance(transport, Mapping) else None
        if failure_code in _TRANSPORT_FAILURE_CODES:
            return "transport_unreachable"
        if failure_code == "service_response_invalid":
            return "invalid_transport_payload"
        if isinstance(failure_code, str) and failure_code:
            return failure_code
    text = output.lower()
    if "missing required artifact" in text or "events artifact" in text:
        return "missing_runtime_artifacts"
    if any(
        marker in text for marker in ("service request failed", "transport_unreachable", "connection refused")
    ):
        return "transport_unreachable"
    invalid_at = text.find("invalid")
    if (invalid_at >= 0 and "json" in text[invalid_at:]) or "invalid payload" in text:
        return "invalid_transport_payload"
    return "reconcile_failed"


def compute_output_excerpt(output: str) -> str | None:
    """Whitespace-collapsed, trimmed, at most 600 characters; None when empty (not a lone space)."""
    excerpt = " ".join(output.split())[:_EXCERPT_LIMIT].strip()
    return excerpt or None


def _seconds_between(start: dt.datetime, end: dt.datetime) -> int:
    return max(0, int((end - start).total_seconds()))


def build_loop_result(
    loop: Mapping[str, Any],
    *,
    repo: str,
    trace_id: str,
    started_at: dt.datetime,
    ended_at: dt.datetime,
    preflight_reason: str | None = None,
    outcome: LoopRunOutcome | None = None,
) -> JsonObject:
    """The per-loop result record of the fleet state (§2.4 key order)."""
    loop_id = str(loop.get("loopId"))
    health_status: Any = "unknown"
    health_codes: Any = []
    transition_state: Any = None
    reason_code: str | None = None
    output = ""
    if preflight_reason is not None or outcome is None:
        reason_code = preflight_reason or "reconcile_failed"
        status = "skipped" if reason_code == "loop_disabled" else "failed"
    elif outcome.exit_code == 0:
        status = "success"
        success_doc = outcome.document or {}
        health = success_doc.get("health")
        health = health if isinstance(health, Mapping) else {}
        health_status = health.get("status") or "unknown"
        health_codes = health.get("reasonCodes") or []
        transition = success_doc.get("transition")
        if isinstance(transition, Mapping):
            transition_state = transition.get("currentState")
    else:
        status = "failed"
        output = outcome.output
        document = outcome.document if outcome.document is not None else parse_reconciler_output(output)
        if document is not None:
            health_status = document.get("status") or "unknown"
            health_codes = document.get("reasonCodes") or []
        reason_code = compute_failure_reason(document, output)
    record: JsonObject = {
        "timestamp": format_ts(ended_at),
        "startedAt": format_ts(started_at),
        "loopId": loop_id,
        "transport": loop.get("transport", "local"),
        "enabled": loop.get("enabled", True),
        "status": status,
        "reasonCode": reason_code,
        "reconcileStatus": status,
        "healthStatus": health_status,
        "healthReasonCodes": health_codes,
        "transitionState": transition_state,
        "durationSeconds": _seconds_between(started_at, ended_at),
        "traceId": outcome.trace_id if outcome is not None and outcome.trace_id else trace_id,
        "outputExcerpt": compute_output_excerpt(output) if status != "success" else None,
        "sprite": loop.get("sprite") or {},
        "metadata": loop.get("metadata") or {},
        "files": compute_loop_files(repo, loop_id),
    }
    optional = ("reasonCode", "transitionState", "outputExcerpt")
    return {key: value for key, value in record.items() if key not in optional or value not in (None, "")}


def compute_fleet_rollup(results: Sequence[Mapping[str, Any]]) -> JsonObject:
    """Counts, fleet status and reason codes over the per-loop results."""
    success = sum(1 for result in results if result.get("status") == "success")
    failed = sum(1 for result in results if result.get("status") == "failed")
    skipped = sum(1 for result in results if result.get("status") == "skipped")
    reasons: list[str] = []
    if failed and success:
        status = "partial_failure"
        reasons.append("fleet_partial_failure")
    elif failed:
        status = "failed"
        reasons.append("fleet_reconcile_failed")
    else:
        status = "success"
    health = {result.get("healthStatus") for result in results}
    if "critical" in health:
        reasons.append("fleet_health_critical")
    elif "degraded" in health:
        reasons.append("fleet_health_degraded")
    if skipped:
        reasons.append("fleet_loop_skipped")
    return {
        "status": status,
        "reasonCodes": sorted_unique(reasons),
        "loopCount": len(results),
        "successCount": success,
        "failedCount": failed,
        "skippedCount": skipped,
    }


def build_fleet_state(
    *,
    fleet_id: str,
    trace_id: str,
    started_at: dt.datetime,
    updated_at: dt.datetime,
    results: Sequence[JsonObject],
    settings: FanOutSettings,
) -> JsonObject:
    """The fleet ``state.json`` document (also the command's stdout)."""
    rollup = compute_fleet_rollup(results)
    return {
        "schemaVersion": "v1",
        "updatedAt": format_ts(updated_at),
        "startedAt": format_ts(started_at),
        "fleetId": fleet_id,
        "traceId": trace_id,
        "status": rollup["status"],
        "reasonCodes": rollup["reasonCodes"],
        "loopCount": rollup["loopCount"],
        "successCount": rollup["successCount"],
        "failedCount": rollup["failedCount"],
        "skippedCount": rollup["skippedCount"],
        "durationSeconds": _seconds_between(started_at, updated_at),
        "execution": {
            "maxParallel": settings.max_parallel,
            "deterministicOrder": settings.deterministic_order,
            "fromStart": settings.from_start,
            "maxEvents": settings.max_events or 0,
        },
        "results": list(results),
    }


def build_fleet_telemetry_row(state: Mapping[str, Any]) -> JsonObject:
    """The ``fleet_reconcile`` row appended to the fleet reconcile telemetry."""
    return {
        "timestamp": state["updatedAt"],
        "category": "fleet_reconcile",
        "fleetId": state["fleetId"],
        "traceId": state["traceId"],
        "status": state["status"],
        "reasonCodes": state["reasonCodes"],
        "loopCount": state["loopCount"],
        "successCount": state["successCount"],
        "failedCount": state["failedCount"],
        "skippedCount": state["skippedCount"],
        "durationSeconds": state["durationSeconds"],
        "results": state["results"],
    }
