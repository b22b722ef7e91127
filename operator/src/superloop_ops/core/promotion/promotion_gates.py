"""Promotion gates: five deterministic checks that decide ``promote`` or ``hold`` (promotion §1, §2).

Beyond the contract, a sixth gate, ``shadow_agreement``, joins them when the policy has an
``autonomous.shadow`` block: the shadow decisions' agreement with people over the rolling window
must reach ``minAgreementRate`` on at least ``minSampleSize`` resolved decisions before a canary
expands into guarded_auto (``core.fleet.shadow_agreement``; docs/divergences.md).

The evaluator never changes policy; it reports. Missing or unreadable evidence fails closed
(hold), and each failing gate names its reasons. Inputs are already-read values (the fleet
status document, the handoff telemetry text, the drill evidence text) plus ``now``; the output is
one document, which is at once the stdout document, the promotion state file and the telemetry
row. The CI wrapper's skip result and both markdown summaries live here too, because they are
renderings of that same decision.

Coalescing follows the contract's "alternative" rule (absent, ``null`` or ``false`` fall back;
``0``, ``""`` and ``[]`` are kept), never Python truthiness.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.fleet import shadow_agreement
from superloop_ops.errors import ContractError

__all__ = [
    "CI_MISSING_EVIDENCE",
    "GATE_ORDER",
    "REQUIRED_DRILLS",
    "REQUIRED_GOVERNANCE_CODES",
    "REQUIRED_SUPPRESSION_PATHS",
    "SHADOW_GATE",
    "DrillEvidence",
    "EvidenceState",
    "GateResult",
    "GateSources",
    "GateThresholds",
    "HandoffEvidence",
    "PromotionEvaluation",
    "ShadowEvidence",
    "build_ci_skip_result",
    "build_ci_skip_summary",
    "build_ci_summary",
    "build_drill_evidence",
    "build_handoff_evidence",
    "build_promotion_evaluation",
    "build_shadow_evidence",
    "compute_gates",
    "parse_json_stream",
    "parse_rate",
    "parse_threshold_int",
]

CI_MISSING_EVIDENCE = "promotion_ci_missing_evidence"
REQUIRED_GOVERNANCE_CODES = (
    "autonomous_governance_authority_missing",
    "autonomous_governance_review_deadline_missing",
    "autonomous_governance_review_expired",
)
REQUIRED_DRILLS = ("kill_switch", "sprite_service_outage", "ambiguous_retry_guard")
REQUIRED_SUPPRESSION_PATHS = ("policyGated", "rolloutGated", "governanceGated", "transportGated")
# (failedGates name, key under ``gates``), in evaluation and remediation-priority order.
GATE_ORDER = (
    ("governance", "governance"),
    ("outcome_reliability", "outcomeReliability"),
    ("manual_backlog", "manualBacklog"),
    ("safety_suppression", "safetySuppression"),
    ("drill_recency", "drillRecency"),
)

SHADOW_GATE = ("shadow_agreement", "shadowAgreement")
"""The sixth gate's (failedGates name, key under ``gates``): evaluated last, only when configured."""

EvidenceState = Literal["ok", "missing", "invalid"]

_DIGITS = re.compile(r"\A[0-9]+\Z")
_RATE = re.compile(r"\A(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\Z")


# ---------------------------------------------------------------------------------------------
# small value helpers


def _coalesce(value: Any, default: Any) -> Any:
    """The contract's alternative operator: absent/None/False fall back, everything else stays."""
    return default if value is None or value is False else value


def _field(obj: Any, key: str) -> Any:
    """A field of an object; a non-object has no fields (the reference would crash instead)."""
    return obj.get(key) if isinstance(obj, Mapping) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_number(value: float | int) -> float | int:
    """Integral results print without a fraction (``0``, not ``0.0``), as jq prints them."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_threshold_int(value: str, flag: str, minimum: int) -> int:
    """Plain decimal digits (leading zeros accepted) and ``>= minimum``, else the contract message."""
    if not _DIGITS.match(value) or int(value) < minimum:
        raise ContractError(f"{flag} must be an integer >= {minimum}")
    return int(value)


def parse_rate(value: str, flag: str) -> float | int:
    """``digits[.digits]`` or ``.digits`` within 0..1; echoed as a JSON number (``0.20`` -> ``0.2``)."""
    if not _RATE.match(value):
        raise ContractError(f"{flag} must be a number between 0 and 1")
    number = _json_number(float(value)) if "." in value else int(value)
    if not 0 <= number <= 1:
        raise ContractError(f"{flag} must be a number between 0 and 1")
    return number


def parse_json_stream(text: str) -> list[Any]:
    """Every JSON value in ``text``, separated by any whitespace; raises ValueError on any bad part."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    index, end = 0, len(text)
    while True:
        while index < end and text[index] in " \t\n\r":
            index += 1
        if index >= end:
            return values
        value, index = decoder.raw_decode(text, index)
        values.append(value)


# ---------------------------------------------------------------------------------------------
# inputs


@dataclasses.dataclass(frozen=True)
class GateThresholds:
    """The six thresholds (defaults are the contract's); rates keep their JSON number form."""

    window_executions: int = 20
    min_sample_size: int = 20
    max_ambiguity_rate: float | int = 0.2
    max_failure_rate: float | int = 0.2
    max_manual_backlog: int = 5
    max_drill_age_hours: int = 168

    @classmethod
    def from_flags(
        cls,
        *,
        window_executions: str = "20",
        min_sample_size: str = "20",
        max_ambiguity_rate: str = "0.2",
        max_failure_rate: str = "0.2",
        max_manual_backlog: str = "5",
        max_drill_age_hours: str = "168",
    ) -> GateThresholds:
        """Validate flag strings in the contract's order; the first failure raises ContractError."""
        return cls(
            window_executions=parse_threshold_int(window_executions, "--window-executions", 1),
            min_sample_size=parse_threshold_int(min_sample_size, "--min-sample-size", 1),
            max_ambiguity_rate=parse_rate(max_ambiguity_rate, "--max-ambiguity-rate"),
            max_failure_rate=parse_rate(max_failure_rate, "--max-failure-rate"),
            max_manual_backlog=parse_threshold_int(max_manual_backlog, "--max-manual-backlog", 0),
            max_drill_age_hours=parse_threshold_int(max_drill_age_hours, "--max-drill-age-hours", 1),
        )

    def to_json(self) -> JsonObject:
        return {
            "windowExecutions": self.window_executions,
            "minSampleSize": self.min_sample_size,
            "maxAmbiguityRate": self.max_ambiguity_rate,
            "maxFailureRate": self.max_failure_rate,
            "maxManualBacklog": self.max_manual_backlog,
            "maxDrillAgeHours": self.max_drill_age_hours,
        }


@dataclasses.dataclass(frozen=True)
class HandoffEvidence:
    """The handoff telemetry stream: ``missing``/``invalid`` carry no records (fail closed)."""

    state: EvidenceState
    records: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class DrillEvidence:
    """The drill evidence document; ``document`` is None unless ``state`` is ``ok``."""

    state: EvidenceState
    document: Any = None


def build_handoff_evidence(text: str | None) -> HandoffEvidence:
    """``None`` means the file does not exist; any unparsable part discards the whole history."""
    if text is None:
        return HandoffEvidence("missing")
    try:
        return HandoffEvidence("ok", tuple(parse_json_stream(text)))
    except ValueError:
        return HandoffEvidence("invalid")


@dataclasses.dataclass(frozen=True)
class ShadowEvidence:
    """The shadow ledger (``shadow-state.json``) and the policy's shadow settings."""

    state: EvidenceState
    config: shadow_agreement.ShadowConfig
    decisions: tuple[Any, ...] = ()


def build_shadow_evidence(registry: Any, text: str | None) -> ShadowEvidence | None:
    """None when the policy has no ``autonomous.shadow`` block (no gate); ``text`` None is missing."""
    policy = _field(registry, "policy")
    config = shadow_agreement.ShadowConfig.read(policy if isinstance(policy, Mapping) else None)
    if not config.gate_required:
        return None
    if text is None:
        return ShadowEvidence("missing", config)
    try:
        document = json.loads(text)
    except ValueError:
        return ShadowEvidence("invalid", config)
    decisions = _field(document, "decisions")
    if not isinstance(decisions, list):
        return ShadowEvidence("invalid", config)
    return ShadowEvidence("ok", config, tuple(d for d in decisions if isinstance(d, Mapping)))


def build_drill_evidence(text: str | None) -> DrillEvidence:
    """``None`` means missing. Empty text, bad JSON, a non-object document or a non-array
    ``drills`` are all ``invalid`` (the reference crashed or truncated its state on these)."""
    if text is None:
        return DrillEvidence("missing")
    try:
        document = json.loads(text)
    except ValueError:
        return DrillEvidence("invalid")
    if document is not None and not isinstance(document, Mapping):
        return DrillEvidence("invalid")
    drills = _coalesce(_field(document, "drills"), [])
    if not isinstance(drills, list):
        return DrillEvidence("invalid")
    return DrillEvidence("ok", document)


@dataclasses.dataclass(frozen=True)
class GateSources:
    """Where the evidence came from, echoed as ``source`` (paths exactly as given or defaulted)."""

    repo_path: str
    fleet_status_file: str | None
    handoff_telemetry_file: str
    drill_state_file: str
    promotion_state_file: str
    promotion_telemetry_file: str

    def to_json(self) -> JsonObject:
        return {
            "repoPath": self.repo_path,
            "fleetStatusSource": "generated" if self.fleet_status_file is None else "file",
            "fleetStatusFile": self.fleet_status_file,
            "handoffTelemetryFile": self.handoff_telemetry_file,
            "drillStateFile": self.drill_state_file,
            "promotionStateFile": self.promotion_state_file,
            "promotionTelemetryFile": self.promotion_telemetry_file,
        }


# ---------------------------------------------------------------------------------------------
# the five gates


@dataclasses.dataclass(frozen=True)
class GateResult:
    """One gate: its reasons in evaluation order and its detail fields (after status/reasons)."""

    name: str
    key: str
    reasons: tuple[str, ...]
    detail: JsonObject

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_json(self) -> JsonObject:
        return {"status": "pass" if self.passed else "fail", "reasons": list(self.reasons), **self.detail}


def _governance_gate(autonomous: Any) -> GateResult:
    governance = _coalesce(_field(autonomous, "governance"), {})
    raw_codes = _field(governance, "reasonCodes")
    codes_in = raw_codes if isinstance(raw_codes, list) else []
    codes = sorted(
        {code if isinstance(code, str) else json.dumps(code, separators=(",", ":")) for code in codes_in}
    )
    reasons: list[str] = []
    if _coalesce(_field(autonomous, "enabled"), False) is False:
        reasons.append("promotion_policy_mode_not_guarded_auto")
    if _coalesce(_field(governance, "posture"), "") != "active":
        reasons.append("promotion_governance_posture_not_active")
    blocks = _field(governance, "blocksAutonomous")
    if blocks is True:
        reasons.append("promotion_governance_blocks_autonomous")
    reasons += [
        "promotion_" + code.removeprefix("autonomous_") for code in REQUIRED_GOVERNANCE_CODES if code in codes
    ]
    return GateResult(
        "governance",
        "governance",
        tuple(reasons),
        {
            "posture": _coalesce(_field(governance, "posture"), None),
            "blocksAutonomous": _coalesce(blocks, False),
            "reasonCodes": codes,
        },
    )


def _count(execution: Any, key: str) -> int | float:
    value = _field(execution, key)
    return value if _is_number(value) else 0


def _reliability_gate(handoff: HandoffEvidence, thresholds: GateThresholds) -> GateResult:
    runs = [
        record
        for record in handoff.records
        if isinstance(record, Mapping)
        and _coalesce(record.get("category"), "") == "fleet_handoff_execute"
        and _coalesce(_field(record.get("execution"), "mode"), "") == "autonomous"
    ]
    window = runs[-thresholds.window_executions :]
    executions = [record.get("execution") for record in window]
    attempted = sum(_count(execution, "requestedIntentCount") for execution in executions)
    executed = sum(_count(execution, "executedCount") for execution in executions)
    ambiguous = sum(_count(execution, "ambiguousCount") for execution in executions)
    failed = sum(_count(execution, "failedCount") for execution in executions)
    ambiguity_rate = _json_number(ambiguous / attempted) if attempted > 0 else 0
    failure_rate = _json_number(failed / attempted) if attempted > 0 else 0
    sample = len(window)
    reasons: list[str] = []
    if handoff.state == "missing":
        reasons.append("promotion_handoff_telemetry_missing")
    if handoff.state == "invalid":
        reasons.append("promotion_handoff_telemetry_invalid")
    if sample < thresholds.min_sample_size:
        reasons.append("promotion_autonomous_sample_insufficient")
    if sample >= thresholds.min_sample_size and attempted == 0:
        reasons.append("promotion_autonomous_attempts_zero")
    if attempted > 0 and ambiguity_rate > thresholds.max_ambiguity_rate:
        reasons.append("promotion_autonomous_ambiguity_rate_exceeded")
    if attempted > 0 and failure_rate > thresholds.max_failure_rate:
        reasons.append("promotion_autonomous_failure_rate_exceeded")
    return GateResult(
        "outcome_reliability",
        "outcomeReliability",
        tuple(reasons),
        {
            "sampleRuns": sample,
            "attempted": _json_number(attempted),
            "executed": _json_number(executed),
            "ambiguous": _json_number(ambiguous),
            "failed": _json_number(failed),
            "ambiguityRate": ambiguity_rate,
            "failureRate": failure_rate,
        },
    )


def _manual_backlog_gate(autonomous: Any, thresholds: GateThresholds) -> GateResult:
    backlog = _coalesce(_field(_field(autonomous, "outcomeRollup"), "manual_backlog"), None)
    reasons: list[str] = []
    if not _is_number(backlog):
        # A non-number (a string, a list) is unavailable, not "exceeded" as jq's ordering made it.
        reasons.append("promotion_manual_backlog_unavailable")
    elif backlog > thresholds.max_manual_backlog:
        reasons.append("promotion_manual_backlog_exceeded")
    return GateResult("manual_backlog", "manualBacklog", tuple(reasons), {"manualBacklog": backlog})


def _safety_gate(autonomous: Any) -> GateResult:
    rollout = _field(autonomous, "rollout")
    # ``autopause.active: false`` falls through to ``state.autoPauseActive`` (a contract fact).
    active = _coalesce(
        _field(_field(rollout, "autopause"), "active"),
        _coalesce(_field(_field(rollout, "state"), "autoPauseActive"), False),
    )
    autopause_active = active is True
    by_path = _field(_field(autonomous, "safetyGateDecisions"), "byPath")
    if isinstance(by_path, Mapping):
        missing = [path for path in REQUIRED_SUPPRESSION_PATHS if path not in by_path]
    else:
        by_path = None
        missing = list(REQUIRED_SUPPRESSION_PATHS)
    reasons: list[str] = []
    if autopause_active:
        reasons.append("promotion_autopause_active")
    if missing:
        reasons.append("promotion_suppression_paths_missing")
    return GateResult(
        "safety_suppression",
        "safetySuppression",
        tuple(reasons),
        {"autopauseActive": autopause_active, "missingPaths": missing, "byPath": by_path},
    )


def _drill_reasons(drills: Sequence[Any], drill_id: str, now: dt.datetime, max_age_hours: int) -> list[str]:
    entry = next(
        (item for item in drills if isinstance(item, Mapping) and _coalesce(item.get("id"), "") == drill_id),
        None,
    )
    if entry is None:
        return [f"promotion_drill_missing_{drill_id}"]
    reasons: list[str] = []
    if _coalesce(entry.get("status"), "") != "pass":
        reasons.append(f"promotion_drill_not_passed_{drill_id}")
    completed = parse_ts(entry.get("completedAt"))
    if completed is None:
        # Fail closed: the reference's version of this rule was dead code (and wiped other reasons).
        reasons.append(f"promotion_drill_timestamp_invalid_{drill_id}")
    elif (now - completed).total_seconds() / 3600 > max_age_hours:
        reasons.append(f"promotion_drill_stale_{drill_id}")
    return reasons


def _drill_gate(evidence: DrillEvidence, thresholds: GateThresholds, now: dt.datetime) -> GateResult:
    reasons: list[str] = []
    drills: list[Any] = []
    if evidence.state == "missing":
        reasons.append("promotion_drill_state_missing")
    elif evidence.state == "invalid":
        reasons.append("promotion_drill_state_invalid")
    else:
        drills = list(_coalesce(_field(evidence.document, "drills"), []))
        for drill_id in REQUIRED_DRILLS:
            reasons += _drill_reasons(drills, drill_id, now, thresholds.max_drill_age_hours)
    return GateResult(
        "drill_recency",
        "drillRecency",
        tuple(reasons),
        {"requiredDrills": list(REQUIRED_DRILLS), "drills": drills},
    )


def _shadow_gate(evidence: ShadowEvidence, now: dt.datetime) -> GateResult:
    """shadow_agreement: the figures are recomputed at ``now`` from the ledger's decisions."""
    agreement = (
        shadow_agreement.compute_agreement(evidence.decisions, evidence.config, now)
        if evidence.state == "ok"
        else None
    )
    reasons, detail = shadow_agreement.evaluate_shadow_gate(evidence.config, agreement, evidence.state)
    return GateResult(*SHADOW_GATE, tuple(reasons), detail)


def compute_gates(
    status: Any,
    handoff: HandoffEvidence,
    drills: DrillEvidence,
    thresholds: GateThresholds,
    now: dt.datetime,
    shadow: ShadowEvidence | None = None,
) -> tuple[GateResult, ...]:
    """The five gates in ``GATE_ORDER`` (then shadow_agreement when configured); ``now`` is the
    document's ``generatedAt`` instant."""
    autonomous = _coalesce(_field(status, "autonomous"), {})
    now = now.replace(microsecond=0)
    gates = (
        _governance_gate(autonomous),
        _reliability_gate(handoff, thresholds),
        _manual_backlog_gate(autonomous, thresholds),
        _safety_gate(autonomous),
        _drill_gate(drills, thresholds, now),
    )
    return gates if shadow is None else (*gates, _shadow_gate(shadow, now))


# ---------------------------------------------------------------------------------------------
# decision and document


@dataclasses.dataclass(frozen=True)
class PromotionEvaluation:
    """The decision and the full document (stdout, state file and telemetry row are this)."""

    decision: Literal["promote", "hold"]
    failed_gates: tuple[str, ...]
    reason_codes: tuple[str, ...]
    gates: tuple[GateResult, ...]
    document: JsonObject

    @property
    def promote(self) -> bool:
        return self.decision == "promote"


def build_promotion_evaluation(
    *,
    status: Any,
    handoff: HandoffEvidence,
    drills: DrillEvidence,
    thresholds: GateThresholds,
    sources: GateSources,
    trace_id: str,
    now: dt.datetime,
    shadow: ShadowEvidence | None = None,
) -> PromotionEvaluation:
    """Evaluate the gates and build the promotion decision document (promotion §1.4, §1.5)."""
    gates = compute_gates(status, handoff, drills, thresholds, now, shadow)
    failed = tuple(gate.name for gate in gates if not gate.passed)
    codes = tuple(sorted({reason for gate in gates for reason in gate.reasons}))
    decision: Literal["promote", "hold"] = "hold" if failed else "promote"
    document: JsonObject = {
        "schemaVersion": "v1",
        "generatedAt": format_ts(now),
        "traceId": trace_id,
        "source": sources.to_json(),
        "thresholds": thresholds.to_json(),
        "summary": {
            "decision": decision,
            "promote": not failed,
            "gatePassCount": len(gates) - len(failed),
            "gateFailCount": len(failed),
            "failedGates": list(failed),
            "reasonCodes": list(codes),
        },
        "gates": {gate.key: gate.to_json() for gate in gates},
    }
    return PromotionEvaluation(decision, failed, codes, gates, document)


# ---------------------------------------------------------------------------------------------
# CI wrapper renderings


def build_ci_skip_result(repo_path: str, missing_paths: Sequence[str], now: dt.datetime) -> JsonObject:
    """The ``skipped`` CI result: the evaluator did not run, so no trace, thresholds or gates."""
    return {
        "schemaVersion": "v1",
        "generatedAt": format_ts(now),
        "source": {"repoPath": repo_path},
        "summary": {
            "decision": "skipped",
            "promote": False,
            "reasonCodes": [CI_MISSING_EVIDENCE],
            "missingEvidencePaths": list(missing_paths),
        },
    }


def build_ci_skip_summary(missing_paths: Sequence[str]) -> str:
    """Markdown for a skipped run; paths render in backticks (the reference's quoting bug fixed)."""
    lines = [
        "## Ops Manager Promotion CI",
        "",
        "Decision: `skipped`",
        "",
        f"Reason codes: `{CI_MISSING_EVIDENCE}`",
        "",
        "Missing evidence paths:",
        *(f"- `{path}`" for path in missing_paths),
    ]
    return "\n".join(lines) + "\n"


def _joined(summary: Any, key: str) -> str:
    values = _coalesce(_field(summary, key), [])
    items = (
        [value if isinstance(value, str) else json.dumps(value) for value in values]
        if isinstance(values, list)
        else []
    )
    return ", ".join(items) or "none"


def build_ci_summary(
    document: Any, *, result_file: str, promotion_state_file: str, promotion_telemetry_file: str
) -> str:
    """Markdown for an evaluated run (decision, failed gates, reason codes, artifact paths)."""
    summary = _field(document, "summary")
    decision = _coalesce(_field(summary, "decision"), "unknown")
    lines = [
        "## Ops Manager Promotion CI",
        "",
        f"Decision: `{decision}`",
        "",
        f"Failed gates: {_joined(summary, 'failedGates')}",
        "",
        f"Reason codes: {_joined(summary, 'reasonCodes')}",
        "",
        f"Result JSON: `{result_file}`",
        "",
        f"Promotion state: `{promotion_state_file}`",
        "",
        f"Promotion telemetry: `{promotion_telemetry_file}`",
    ]
    return "\n".join(lines) + "\n"
