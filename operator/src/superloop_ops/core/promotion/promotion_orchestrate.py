"""Promotion orchestrate: CI first, then (in ``apply``/``rollback`` mode) one governed apply (§4).

Pure planning: flag validation in the contract's order, the argument lists forwarded to the CI
and apply steps (always lists, never a split string: values with spaces work, unlike the
reference), the status for a mode, and the result document and markdown summary. Running the
steps, reading the CI result file and writing artifacts is the shell's job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, Literal

from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.promotion.apply_rules import parse_expand_step
from superloop_ops.errors import ContractError

__all__ = [
    "MODES",
    "THRESHOLD_FLAGS",
    "OrchestrateMode",
    "OrchestrateRequest",
    "build_apply_argv",
    "build_ci_argv",
    "build_orchestrate_request",
    "build_orchestrate_result",
    "build_orchestrate_summary",
    "compute_status",
    "read_ci_decision",
]

OrchestrateMode = Literal["dry_run", "apply", "rollback"]
MODES: tuple[OrchestrateMode, ...] = ("dry_run", "apply", "rollback")
# CLI flag -> OrchestrateRequest field, in forwarding order.
THRESHOLD_FLAGS = (
    ("--window-executions", "window_executions"),
    ("--min-sample-size", "min_sample_size"),
    ("--max-ambiguity-rate", "max_ambiguity_rate"),
    ("--max-failure-rate", "max_failure_rate"),
    ("--max-manual-backlog", "max_manual_backlog"),
    ("--max-drill-age-hours", "max_drill_age_hours"),
)


@dataclasses.dataclass(frozen=True)
class OrchestrateRequest:
    """Validated orchestrate flags; optional values are None when not given (or empty)."""

    mode: OrchestrateMode
    apply_intent: Literal["expand", "resume"] = "expand"
    expand_step: str = "25"
    fleet_status_file: str | None = None
    handoff_telemetry_file: str | None = None
    drill_state_file: str | None = None
    window_executions: str | None = None
    min_sample_size: str | None = None
    max_ambiguity_rate: str | None = None
    max_failure_rate: str | None = None
    max_manual_backlog: str | None = None
    max_drill_age_hours: str | None = None
    skip_on_missing_evidence: bool = False
    fail_on_hold: bool = False
    idempotency_key: str | None = None
    trace_id: str | None = None
    by: str | None = None
    approval_ref: str | None = None
    rationale: str | None = None
    review_by: str | None = None


def build_orchestrate_request(
    *, mode: str | None, apply_intent: str, expand_step: str, **rest: Any
) -> OrchestrateRequest:
    """Checks in order: mode, apply-intent, expand-step (all in every mode), then, for ``apply``
    and ``rollback`` only, the four governance flags. The review-by format is apply's concern."""
    if mode not in MODES:
        raise ContractError("--mode must be one of dry_run, apply, rollback")
    if apply_intent not in ("expand", "resume"):
        raise ContractError("--apply-intent must be one of expand, resume")
    parse_expand_step(expand_step)
    if mode != "dry_run":
        for flag, key in (
            ("--by", "by"),
            ("--approval-ref", "approval_ref"),
            ("--rationale", "rationale"),
            ("--review-by", "review_by"),
        ):
            if not rest.get(key):
                raise ContractError(f"{flag} is required for mode {mode}")
    cleaned = {key: (value or None) if isinstance(value, str) else value for key, value in rest.items()}
    return OrchestrateRequest(mode=mode, apply_intent=apply_intent, expand_step=expand_step, **cleaned)  # type: ignore[arg-type]


def build_ci_argv(
    request: OrchestrateRequest, repo: str, ci_result_file: str, ci_summary_file: str
) -> list[str]:
    """CI wrapper arguments: repo and artifacts always, the rest only when set, in contract order.

    Neither ``--promotion-state-file`` nor ``--pretty`` is forwarded (contract fact).
    """
    argv = ["--repo", repo, "--result-file", ci_result_file, "--summary-file", ci_summary_file]
    for flag, value in (
        ("--fleet-status-file", request.fleet_status_file),
        ("--handoff-telemetry-file", request.handoff_telemetry_file),
        ("--drill-state-file", request.drill_state_file),
        *((flag, getattr(request, key)) for flag, key in THRESHOLD_FLAGS),
    ):
        if value:
            argv += [flag, value]
    if request.skip_on_missing_evidence:
        argv.append("--skip-on-missing-evidence")
    if request.fail_on_hold:
        argv.append("--fail-on-hold")
    if request.trace_id:
        argv += ["--trace-id", request.trace_id]
    return argv


def build_apply_argv(request: OrchestrateRequest, repo: str, ci_result_file: str) -> list[str] | None:
    """Apply arguments (None in ``dry_run``): the CI **result** file is the decision input.

    ``--expand-step`` is forwarded only for ``apply`` + ``expand``; ``rollback`` mode always
    sends intent ``rollback`` whatever ``--apply-intent`` says.
    """
    if request.mode == "dry_run":
        return None
    intent = request.apply_intent if request.mode == "apply" else "rollback"
    argv = ["--repo", repo, "--promotion-state-file", ci_result_file, "--intent", intent]
    argv += ["--by", request.by or "", "--approval-ref", request.approval_ref or ""]
    argv += ["--rationale", request.rationale or "", "--review-by", request.review_by or ""]
    if request.mode == "apply" and intent == "expand":
        argv += ["--expand-step", request.expand_step]
    if request.idempotency_key:
        argv += ["--idempotency-key", request.idempotency_key]
    if request.trace_id:
        argv += ["--trace-id", request.trace_id]
    return argv


def compute_status(mode: OrchestrateMode) -> str:
    return {"dry_run": "preview", "apply": "applied", "rollback": "rolled_back"}[mode]


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def read_ci_decision(ci_result: Any) -> tuple[Any, list[Any], list[Any]]:
    """(decision, failedGates, reasonCodes) of a CI result; decision ``unknown`` when absent."""
    summary = ci_result.get("summary") if isinstance(ci_result, Mapping) else None
    summary = summary if isinstance(summary, Mapping) else {}
    decision = summary.get("decision")
    if decision is None or decision is False:
        decision = "unknown"
    return decision, _list(summary.get("failedGates")), _list(summary.get("reasonCodes"))


def build_orchestrate_result(
    *,
    request: OrchestrateRequest,
    ci_result: Any,
    apply_record: Any | None,
    files: Mapping[str, str],
    now: dt.datetime,
) -> JsonObject:
    """The orchestrate result (§4.4); ``apply_record`` is None when apply did not run."""
    decision, failed_gates, reason_codes = read_ci_decision(ci_result)
    executed = apply_record is not None
    intent = apply_record.get("intent") if isinstance(apply_record, Mapping) else None
    return {
        "schemaVersion": "v1",
        "timestamp": format_ts(now),
        "mode": request.mode,
        "status": compute_status(request.mode),
        "decision": decision,
        "summary": {"failedGates": failed_gates, "reasonCodes": reason_codes},
        "apply": {
            "executed": executed,
            "intent": intent if intent not in (None, False, "") else None,
            "idempotencyKey": request.idempotency_key,
            "record": apply_record,
        },
        "files": dict(files),
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def build_orchestrate_summary(result: Mapping[str, Any]) -> str:
    """Markdown for the orchestration (the CI section is the CI step's own summary)."""
    summary = result["summary"]
    apply = result["apply"]
    files = result["files"]
    lines = [
        "## Ops Manager Promotion Orchestration",
        "",
        f"Mode: `{result['mode']}`",
        "",
        f"Status: `{result['status']}`",
        "",
        f"Promotion decision: `{_text(result['decision'])}`",
        "",
        f"Failed gates: {', '.join(_text(item) for item in summary['failedGates']) or 'none'}",
        "",
        f"Reason codes: {', '.join(_text(item) for item in summary['reasonCodes']) or 'none'}",
    ]
    if apply["executed"]:
        intent = apply["intent"]
        lines += ["", f"Apply intent: `{'' if intent is None else _text(intent)}`"]
    lines += [
        "",
        f"Result JSON: `{files['resultFile']}`",
        "",
        f"Promotion CI result: `{files['promotionCiResultFile']}`",
    ]
    return "\n".join(lines) + "\n"
