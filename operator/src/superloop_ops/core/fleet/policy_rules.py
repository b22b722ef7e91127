"""Fleet policy: turn a fleet reconcile into reason-coded action candidates, and decide which of
them an autonomous executor may act on.

Every rule that limits autonomy reads the *durable* journal (policy history, handoff
telemetry), never in-memory counters, so a restarted operator makes the same decision:

* advisory dedupe and the autonomous cooldown come from the latest history rows per candidate;
* the per-run and per-loop caps also count selections already recorded under the same policy
  trace id (a restart that re-evaluates the same run cannot hand out fresh slots);
* auto-pause is computed from the last autonomous executions in handoff telemetry.

The result of one evaluation is a ``PolicyEvaluation``: the new policy state plus the rows the
shell appends (history, telemetry, and at most one governance audit event).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.fleet import suppressions as suppression_rules
from superloop_ops.core.fleet.fleet_registry import CATEGORIES, DEFAULT_SALT
from superloop_ops.core.fleet.rollup import sorted_unique
from superloop_ops.models.fleet_policy import DEFAULT_CANARY_PERCENT

__all__ = [
    "GUARDED_AUTO",
    "SEVERITY_RANK",
    "SHADOW",
    "SHADOW_MODE_REASON",
    "HistoryNeeds",
    "PolicyEvaluation",
    "PolicyPaths",
    "build_governance_block",
    "build_governance_event",
    "build_policy_evaluation",
    "compute_autopause",
    "compute_cohort_bucket",
    "compute_execution_lookback",
    "compute_governance_expired",
    "compute_history_needs",
    "extend_execution_window",
    "json_number",
]

GUARDED_AUTO = "guarded_auto"
SHADOW = "shadow"
SHADOW_MODE_REASON = "policy_mode_shadow"
"""Why a shadow candidate is never eligible: shadow records the decision and executes nothing."""
_SHADOW_FLAG = "autonomousShadowWouldExecute"
_CANARY_EXCLUDED = "autonomous_rollout_canary_excluded"
_HASH_MODULUS = 1000003
_TAXONOMY: dict[str, tuple[str, str, str]] = {
    "reconcile_failed": ("critical", "high", "Loop reconcile failed in fleet fan-out"),
    "health_critical": ("critical", "high", "Loop health is critical"),
    "health_degraded": ("warning", "medium", "Loop health is degraded"),
}
SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1}
"""A candidate's severity as a rank (higher is more severe): gates and intent pacing compare these."""
_CONFIDENCE_RANK = {"high": 3, "medium": 2, "low": 1}
_GOVERNANCE_KEYS = ("actor", "approvalRef", "rationale", "changedAt", "reviewBy")
GOVERNANCE_EXPIRED_REASON = "autonomous_governance_review_expired"


@dataclasses.dataclass(frozen=True)
class PolicyPaths:
    """File paths recorded in the policy documents (display only; the shell owns the files)."""

    registry_file: str
    fleet_state_file: str
    policy_state_file: str
    policy_history_file: str
    handoff_telemetry_file: str
    governance_audit_file: str


@dataclasses.dataclass(frozen=True)
class PolicyEvaluation:
    """Outputs of one policy run, in the order the shell must persist them."""

    state: JsonObject
    governance_event: JsonObject | None
    history_rows: list[JsonObject]
    telemetry_row: JsonObject


def json_number(value: float) -> int | float:
    """Integral floats print as integers, as the reference's JSON does (a rate of 1.0 is ``1``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def compute_cohort_bucket(loop_id: str, salt: str = DEFAULT_SALT) -> int:
    """The exact rollout bucket (0..99) of a loop: a rolling hash over the code points of the seed."""
    value = 17
    for char in f"{loop_id}|{salt}":
        value = (value * 31 + ord(char)) % _HASH_MODULUS
    return value % 100


def compute_governance_expired(governance: Mapping[str, Any], mode: str, now: dt.datetime) -> bool:
    """True when a guarded_auto policy's review deadline has passed: autonomy stops, reads keep working."""
    review_by = parse_ts(governance.get("reviewBy"))
    return mode == GUARDED_AUTO and review_by is not None and review_by <= now


def _history_index(rows: Iterable[Any], flag: str, want: bool) -> dict[str, dt.datetime]:
    """Latest parseable timestamp per candidateId among rows whose ``flag`` is (or is not) true."""
    latest: dict[str, dt.datetime] = {}
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        candidate_id = row.get("candidateId")
        moment = parse_ts(row.get("timestamp"))
        if not isinstance(candidate_id, str) or moment is None:
            continue
        if (row.get(flag) is True) != want:
            continue
        if candidate_id not in latest or moment > latest[candidate_id]:
            latest[candidate_id] = moment
    return latest


def _window(last: dt.datetime | None, now: dt.datetime, seconds: int) -> tuple[bool, int]:
    """(active, remainingSeconds) of a cooldown window that started at ``last``."""
    if seconds <= 0 or last is None:
        return False, 0
    age = int((now - last).total_seconds())
    if age < seconds:
        return True, seconds - age
    return False, 0


def _count(row: Mapping[str, Any], key: str) -> int | float:
    value = row.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _lookback(rollout: Mapping[str, Any]) -> int:
    return int((rollout.get("autoPause") or {}).get("lookbackExecutions", 5))


def compute_execution_lookback(registry: Mapping[str, Any]) -> int:
    """How many of the latest autonomous executions auto-pause reads (``autoPause.lookbackExecutions``)."""
    return _lookback(_PolicyInputs.read(registry).rollout)


def compute_autopause(rollout: Mapping[str, Any], handoff_rows: Sequence[Any]) -> JsonObject:
    """The rollout pause object: manual pause plus auto-pause from recent autonomous executions.

    ``autoPause.enabled: false`` really disables the triggers (the reference ignored it).
    """
    config = rollout.get("autoPause") or {}
    enabled = config.get("enabled") is not False
    lookback = _lookback(rollout)
    min_sample = config.get("minSampleSize", 3)
    ambiguity_threshold = config.get("ambiguityRateThreshold", 0.4)
    failure_threshold = config.get("failureRateThreshold", 0.4)
    executions = [
        row
        for row in handoff_rows
        if isinstance(row, Mapping)
        and row.get("category") == "fleet_handoff_execute"
        and isinstance(row.get("execution"), Mapping)
        and row["execution"].get("mode") == "autonomous"
    ]
    executions.sort(key=lambda row: str(row.get("timestamp") or ""))
    window = executions[-lookback:] if lookback > 0 else []
    attempted: int | float = 0
    executed: int | float = 0
    ambiguous: int | float = 0
    failed: int | float = 0
    for row in window:
        execution = row["execution"]
        if isinstance(execution.get("executedIntentCount"), (int, float)):
            attempted += _count(execution, "executedIntentCount")
        else:
            attempted += _count(execution, "requestedIntentCount")
        executed += _count(execution, "executedCount")
        ambiguous += _count(execution, "ambiguousCount")
        failed += _count(execution, "failedCount")
    ambiguity_rate = ambiguous / attempted if attempted > 0 else 0
    failure_rate = failed / attempted if attempted > 0 else 0
    triggers: list[str] = []
    if enabled and attempted >= min_sample:
        if ambiguity_rate >= ambiguity_threshold:
            triggers.append("autonomous_autopause_ambiguous_spike")
        if failure_rate >= failure_threshold:
            triggers.append("autonomous_autopause_failure_spike")
    manual = (rollout.get("pause") or {}).get("manual") is True
    reasons: list[str] = []
    if manual:
        reasons.append("autonomous_rollout_paused_manual")
    if triggers:
        reasons.append("autonomous_rollout_paused_auto")
    return {
        "active": bool(reasons),
        "reasons": sorted_unique(reasons),
        "manual": manual,
        "auto": {
            "enabled": enabled,
            "active": bool(triggers),
            "reasons": sorted_unique(triggers),
            "lookbackExecutions": lookback,
            "minSampleSize": min_sample,
            "ambiguityRateThreshold": ambiguity_threshold,
            "failureRateThreshold": failure_threshold,
            "metrics": {
                "windowExecutionCount": len(window),
                "attemptedCount": json_number(attempted),
                "executedCount": json_number(executed),
                "ambiguousCount": json_number(ambiguous),
                "failedCount": json_number(failed),
                "ambiguityRate": json_number(float(ambiguity_rate)),
                "failureRate": json_number(float(failure_rate)),
            },
        },
    }


def _base_candidates(fleet_state: Mapping[str, Any]) -> list[JsonObject]:
    results = fleet_state.get("results")
    found: dict[str, JsonObject] = {}
    for result in results if isinstance(results, list) else []:
        if not isinstance(result, Mapping):
            continue
        signals: list[tuple[str, str]] = []
        if result.get("status") == "failed":
            signals.append(("reconcile_failed", "status_failed"))
        if result.get("healthStatus") == "critical":
            signals.append(("health_critical", "health_critical"))
        if result.get("healthStatus") == "degraded":
            signals.append(("health_degraded", "health_degraded"))
        for category, signal in signals:
            severity, confidence, rationale = _TAXONOMY[category]
            loop_id = result.get("loopId")
            candidate_id = f"{loop_id}:{category}"
            found.setdefault(
                candidate_id,
                {
                    "loopId": loop_id,
                    "category": category,
                    "signal": signal,
                    "traceId": result.get("traceId"),
                    "candidateId": candidate_id,
                    "severity": severity,
                    "confidence": confidence,
                    "rationale": rationale,
                    "taxonomyVersion": "v1",
                    "recommendedIntent": "cancel",
                },
            )
    return sorted(found.values(), key=lambda item: (str(item["loopId"]), str(item["category"])))


def _suppression(candidate: Mapping[str, Any], suppressions: Mapping[str, Any]) -> tuple[str, str] | None:
    """(scope, source) when the registry suppresses this candidate; loop entries win over ``*``."""
    loop_entry = suppressions.get(str(candidate["loopId"]))
    if isinstance(loop_entry, list) and candidate["category"] in loop_entry:
        # The reference writes this placeholder verbatim; we keep it (readers grep for it).
        return "loop", "policy.suppressions.<loopId>"
    global_entry = suppressions.get("*")
    if isinstance(global_entry, list) and candidate["category"] in global_entry:
        return "global", "policy.suppressions.*"
    return None


def build_governance_block(governance: Mapping[str, Any], mode: str) -> JsonObject:
    """The policy state's ``autonomous.governance`` object."""
    block: JsonObject = {
        key: governance[key] for key in (*_GOVERNANCE_KEYS, "reviewWindowDays") if key in governance
    }
    block["requiredForGuardedAuto"] = True
    block["authorityContextPresent"] = mode != GUARDED_AUTO or all(
        governance.get(key) is not None for key in _GOVERNANCE_KEYS
    )
    return block


def _prior_run_selections(history: Sequence[Any], trace_id: str, flag: str) -> dict[str, str]:
    """candidateId -> loopId already selected as eligible under this policy trace (survives restarts)."""
    selected: dict[str, str] = {}
    for row in history:
        if (
            isinstance(row, Mapping)
            and row.get("traceId") == trace_id
            and row.get(flag) is True
            and isinstance(row.get("candidateId"), str)
        ):
            selected.setdefault(row["candidateId"], str(row.get("loopId")))
    return selected


@dataclasses.dataclass(frozen=True)
class _AutonomyControls:
    """The policy's autonomy controls with their defaults, read once per evaluation."""

    mode: str
    categories: Sequence[Any]
    intents: Sequence[Any]
    min_severity: int
    min_confidence: int
    run_cap: int
    loop_cap: int
    cooldown_seconds: int
    kill_switch: bool
    canary: Any
    scope_ids: list[Any]
    salt: str
    shadow_block: bool = False

    @property
    def guarded(self) -> bool:
        return self.mode == GUARDED_AUTO

    @property
    def shadows_canary_complement(self) -> bool:
        """guarded_auto with a shadow block: the loops the canary leaves out run in shadow."""
        return self.guarded and self.shadow_block

    @property
    def shadow(self) -> bool:
        return self.mode == SHADOW

    @property
    def classifies(self) -> bool:
        """guarded_auto or shadow: the autonomous path's gates and safety limits run in full."""
        return self.guarded or self.shadow

    @property
    def selection_flag(self) -> str:
        """The history flag of a selection: shadow's cooldown and caps count its would-be executions."""
        return _SHADOW_FLAG if self.shadow else "autonomousEligible"

    @classmethod
    def read(cls, mode: str, controls: Mapping[str, Any]) -> _AutonomyControls:
        allow = controls.get("allow") or {}
        thresholds = controls.get("thresholds") or {}
        safety = controls.get("safety") or {}
        rollout = controls.get("rollout") or {}
        return cls(
            mode=mode,
            categories=allow.get("categories") or [],
            intents=allow.get("intents") or [],
            min_severity=SEVERITY_RANK.get(thresholds.get("minSeverity", "critical"), 0),
            min_confidence=_CONFIDENCE_RANK.get(thresholds.get("minConfidence", "high"), 0),
            run_cap=int(safety.get("maxActionsPerRun", 1)),
            loop_cap=int(safety.get("maxActionsPerLoop", 1)),
            cooldown_seconds=int(safety.get("cooldownSeconds", 300)),
            kill_switch=safety.get("killSwitch") is True,
            canary=rollout.get("canaryPercent", DEFAULT_CANARY_PERCENT),
            scope_ids=list((rollout.get("scope") or {}).get("loopIds") or []),
            salt=(rollout.get("selector") or {}).get("salt") or DEFAULT_SALT,
            shadow_block=isinstance(controls.get("shadow"), Mapping),
        )


@dataclasses.dataclass
class _RunSlots:
    """The per-run and per-loop caps' slots, counting selections already journaled under this trace."""

    prior: dict[str, str]
    total: int
    by_loop: dict[str, int]

    @classmethod
    def read(cls, history: Sequence[Any], trace_id: str, flag: str) -> _RunSlots:
        prior = _prior_run_selections(history, trace_id, flag)
        by_loop: dict[str, int] = {}
        for loop_id in prior.values():
            by_loop[loop_id] = by_loop.get(loop_id, 0) + 1
        return cls(prior, len(prior), by_loop)

    def holds(self, candidate_id: str) -> bool:
        return candidate_id in self.prior

    def take(self, candidate_id: str, loop_id: str) -> None:
        """Consume a slot for a newly eligible candidate (one this run already holds costs nothing)."""
        if self.holds(candidate_id):
            return
        self.total += 1
        self.by_loop[loop_id] = self.by_loop.get(loop_id, 0) + 1


@dataclasses.dataclass(frozen=True)
class _Gates:
    """The policy gates of one candidate (allowlists, thresholds, rollout cohort)."""

    category_ok: bool
    intent_ok: bool
    severity_ok: bool
    confidence_ok: bool
    in_scope: bool
    bucket: int
    canary_selected: bool

    @property
    def in_cohort(self) -> bool:
        return self.in_scope and self.canary_selected


def _evaluate_gates(candidate: Mapping[str, Any], ctl: _AutonomyControls) -> _Gates:
    loop_id = str(candidate["loopId"])
    intent = candidate.get("recommendedIntent")
    bucket = compute_cohort_bucket(loop_id, ctl.salt)
    return _Gates(
        category_ok=candidate["category"] in ctl.categories,
        intent_ok=intent is not None and intent in ctl.intents,
        severity_ok=SEVERITY_RANK.get(candidate["severity"], 0) >= ctl.min_severity,
        confidence_ok=_CONFIDENCE_RANK.get(candidate["confidence"], 0) >= ctl.min_confidence,
        in_scope=not ctl.scope_ids or loop_id in ctl.scope_ids,
        bucket=bucket,
        canary_selected=ctl.canary >= 100 or (ctl.canary > 0 and bucket < ctl.canary),
    )


def _gating_reasons(
    candidate: Mapping[str, Any],
    ctl: _AutonomyControls,
    gates: _Gates,
    pause: Mapping[str, Any],
    governance_expired: bool,
) -> list[str]:
    """Why the policy (not the safety limits) keeps this candidate manual; sorted and unique."""
    gating: list[str] = []
    if not ctl.classifies:
        gating.append("policy_mode_not_guarded_auto")
    if candidate["suppressed"]:
        gating.append("candidate_suppressed")
    if not gates.category_ok:
        gating.append("category_not_allowlisted")
    if candidate.get("recommendedIntent") is None:
        gating.append("no_recommended_intent")
    elif not gates.intent_ok:
        gating.append("intent_not_allowlisted")
    if not gates.severity_ok:
        gating.append("severity_below_threshold")
    if not gates.confidence_ok:
        gating.append("confidence_below_threshold")
    if not gates.in_scope:
        gating.append("autonomous_rollout_scope_excluded")
    elif not gates.canary_selected:
        gating.append("autonomous_rollout_canary_excluded")
    gating += pause["reasons"]
    gating += pause["auto"]["reasons"]
    if ctl.guarded and governance_expired:
        gating.append(GOVERNANCE_EXPIRED_REASON)
    return sorted_unique(gating)


def _safety_reason(
    candidate: Mapping[str, Any], ctl: _AutonomyControls, slots: _RunSlots, cooldown_active: bool
) -> str | None:
    """The first safety limit that blocks an otherwise eligible candidate of a guarded_auto policy."""
    if ctl.kill_switch:
        return "autonomous_kill_switch_enabled"
    if cooldown_active:
        return "autonomous_cooldown_active"
    if slots.holds(candidate["candidateId"]):
        return None  # this run already holds a slot for it
    if slots.total >= ctl.run_cap:
        return "autonomous_max_actions_per_run_exceeded"
    if slots.by_loop.get(str(candidate["loopId"]), 0) >= ctl.loop_cap:
        return "autonomous_max_actions_per_loop_exceeded"
    return None


def _autonomy_block(
    candidate: Mapping[str, Any],
    ctl: _AutonomyControls,
    gates: _Gates,
    gating: list[str],
    reasons: list[str],
    cooldown: tuple[bool, int, dt.datetime | None],
    pause: JsonObject,
) -> JsonObject:
    """The candidate's ``autonomous`` object."""
    eligible = not reasons
    cooldown_active, cooldown_remaining, last = cooldown
    return {
        "mode": ctl.mode,
        "eligible": eligible,
        "manualOnly": not eligible,
        "reasons": reasons,
        "gatingReasons": gating,
        "recommendedIntent": candidate.get("recommendedIntent"),
        "gates": {
            "modeGuardedAuto": ctl.guarded,
            "suppressed": candidate["suppressed"],
            "categoryAllowed": gates.category_ok,
            "intentAllowed": gates.intent_ok,
            "severityMeetsThreshold": gates.severity_ok,
            "confidenceMeetsThreshold": gates.confidence_ok,
            "rolloutScopeAllowed": gates.in_scope,
            "rolloutCanarySelected": gates.canary_selected,
        },
        "safety": {
            "maxActionsPerRun": ctl.run_cap,
            "maxActionsPerLoop": ctl.loop_cap,
            "cooldownSeconds": ctl.cooldown_seconds,
            "killSwitch": ctl.kill_switch,
            "cooldown": {
                "active": cooldown_active,
                "remainingSeconds": cooldown_remaining,
                "lastEligibleAt": format_ts(last) if last else None,
            },
            "killSwitchActive": ctl.guarded and ctl.kill_switch,
            "runCapBlocked": "autonomous_max_actions_per_run_exceeded" in reasons,
            "loopCapBlocked": "autonomous_max_actions_per_loop_exceeded" in reasons,
        },
        "rollout": {
            "canaryPercent": ctl.canary,
            "scopeLoopIds": ctl.scope_ids,
            "selector": {
                "salt": ctl.salt,
                "bucket": gates.bucket,
                "inScope": gates.in_scope,
                "canarySelected": gates.canary_selected,
                "inCohort": gates.in_cohort,
            },
            "pause": pause,
        },
    }


def _classify(
    candidates: list[JsonObject],
    *,
    mode: str,
    controls: Mapping[str, Any],
    pause: JsonObject,
    history: Sequence[Any],
    trace_id: str,
    governance_expired: bool,
    now: dt.datetime,
) -> None:
    """Attach the ``autonomous`` object to each candidate, in final order (caps are consumed in it):
    policy gates first, then the safety limits (kill switch, cooldown, per-run and per-loop caps)."""
    ctl = _AutonomyControls.read(mode, controls)
    last_eligible = _history_index(history, ctl.selection_flag, True)
    slots = _RunSlots.read(history, trace_id, ctl.selection_flag)
    complement = _CanaryComplement.read(history, trace_id) if ctl.shadows_canary_complement else None
    for candidate in candidates:
        gates = _evaluate_gates(candidate, ctl)
        gating = _gating_reasons(candidate, ctl, gates, pause, governance_expired)
        last = last_eligible.get(candidate["candidateId"])
        cooldown_active, cooldown_remaining = _window(last, now, ctl.cooldown_seconds)
        safety = (
            _safety_reason(candidate, ctl, slots, cooldown_active) if not gating and ctl.classifies else None
        )
        reasons = sorted_unique(gating + ([safety] if safety else []))
        if not reasons:
            slots.take(candidate["candidateId"], str(candidate["loopId"]))
        candidate["autonomous"] = _autonomy_block(
            candidate, ctl, gates, gating, reasons, (cooldown_active, cooldown_remaining, last), pause
        )
        if ctl.shadow:
            _record_shadow_decision(candidate["autonomous"], reasons)
        elif complement is not None and gating == [_CANARY_EXCLUDED]:
            candidate["autonomous"]["shadow"] = complement.decide(candidate, ctl, now)


@dataclasses.dataclass
class _CanaryComplement:
    """guarded_auto with a shadow block: a candidate held only by the canary gets the decision it
    would get inside the cohort. Its cooldown and caps count shadow's would-be executions, apart
    from the cohort's real ones."""

    last: dict[str, dt.datetime]
    slots: _RunSlots

    @classmethod
    def read(cls, history: Sequence[Any], trace_id: str) -> _CanaryComplement:
        last = _history_index(history, _SHADOW_FLAG, True)
        return cls(last, _RunSlots.read(history, trace_id, _SHADOW_FLAG))

    def decide(self, candidate: Mapping[str, Any], ctl: _AutonomyControls, now: dt.datetime) -> JsonObject:
        cooldown_active, _ = _window(self.last.get(candidate["candidateId"]), now, ctl.cooldown_seconds)
        safety = _safety_reason(candidate, ctl, self.slots, cooldown_active)
        if safety is None:
            self.slots.take(candidate["candidateId"], str(candidate["loopId"]))
        return {"decision": "hold" if safety else "execute", "reasons": [safety] if safety else []}


def _record_shadow_decision(block: JsonObject, reasons: list[str]) -> None:
    """Shadow: keep what guarded_auto would have decided, and why; nothing is eligible to execute."""
    block["shadow"] = {"decision": "hold" if reasons else "execute", "reasons": reasons}
    block["eligible"] = False
    block["manualOnly"] = True
    block["reasons"] = sorted_unique([*reasons, SHADOW_MODE_REASON])


def _tally(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _policy_reason_codes(
    mode: str, candidates: Sequence[JsonObject], by_autonomy_reason: Mapping[str, int], pause: JsonObject
) -> list[str]:
    unsuppressed = [c for c in candidates if not c["suppressed"]]
    suppressed = [c for c in candidates if c["suppressed"]]
    eligible = [c for c in unsuppressed if c["autonomous"]["eligible"]]
    reasons = ["fleet_action_required" if unsuppressed else "no_action_required"]
    if suppressed:
        reasons.append("fleet_actions_suppressed")
    if any(c["suppressionReason"] == "registry_policy_suppression" for c in candidates):
        reasons.append("fleet_actions_policy_suppressed")
    if any(c["suppressionReason"] == "advisory_cooldown_active" for c in candidates):
        reasons.append("fleet_actions_deduped")
    if mode == GUARDED_AUTO:
        if eligible:
            reasons.append("fleet_auto_candidates_eligible")
        if unsuppressed and not eligible:
            reasons.append("fleet_auto_candidates_blocked")
        if {
            "autonomous_rollout_scope_excluded",
            "autonomous_rollout_canary_excluded",
        } & by_autonomy_reason.keys():
            reasons.append("fleet_auto_candidates_rollout_gated")
        if {"autonomous_rollout_paused_manual", "autonomous_rollout_paused_auto"} & by_autonomy_reason.keys():
            reasons.append("fleet_auto_candidates_paused")
        if pause["auto"]["active"]:
            reasons.append("fleet_auto_candidates_autopause_triggered")
        if "autonomous_kill_switch_enabled" in by_autonomy_reason:
            reasons.append("fleet_auto_kill_switch_enabled")
        safety_codes = {
            "autonomous_cooldown_active",
            "autonomous_max_actions_per_run_exceeded",
            "autonomous_max_actions_per_loop_exceeded",
        }
        if safety_codes & by_autonomy_reason.keys():
            reasons.append("fleet_auto_candidates_safety_blocked")
        if GOVERNANCE_EXPIRED_REASON in by_autonomy_reason:
            reasons.append("fleet_auto_candidates_governance_blocked")
    if mode == SHADOW:
        reasons.append("fleet_shadow_mode")
    if any((c["autonomous"].get("shadow") or {}).get("decision") == "execute" for c in unsuppressed):
        reasons.append("fleet_shadow_would_execute")
    return sorted_unique(reasons)


def _governance_snapshot(state: Mapping[str, Any] | None) -> JsonObject:
    autonomous = (state or {}).get("autonomous")
    autonomous = autonomous if isinstance(autonomous, Mapping) else {}
    return {
        "mode": (state or {}).get("mode") or "advisory",
        "controls": autonomous.get("controls") or {},
        "governance": autonomous.get("governance") or {},
    }


def build_governance_event(
    previous_state: Mapping[str, Any] | None,
    new_state: Mapping[str, Any],
    *,
    had_previous: bool,
    paths: PolicyPaths,
    now: dt.datetime,
) -> JsonObject | None:
    """The immutable audit row for an autonomy-relevant change, or None when nothing changed."""
    current = _governance_snapshot(new_state)
    previous = _governance_snapshot(previous_state)
    if not had_previous:
        event = "autonomous_policy_initialized"
    elif current["mode"] != previous["mode"]:
        event = "autonomous_mode_toggled"
    elif current["controls"] != previous["controls"] or current["governance"] != previous["governance"]:
        event = "autonomous_policy_mutated"
    else:
        return None
    row: JsonObject = {
        "timestamp": format_ts(now),
        "category": "fleet_policy_governance",
        "eventType": event,
        "fleetId": new_state["fleetId"],
        "traceId": new_state["traceId"],
        "mode": current["mode"],
        "previousMode": previous["mode"] if had_previous else None,
        "governance": current["governance"],
        "previousGovernance": previous["governance"] if had_previous else None,
        "controls": current["controls"],
        "previousControls": previous["controls"] if had_previous else None,
        "source": {
            "registryFile": paths.registry_file,
            "policyStateFile": paths.policy_state_file,
            "governanceAuditFile": paths.governance_audit_file,
        },
    }
    return {key: value for key, value in row.items() if value is not None}


def _history_row(candidate: Mapping[str, Any], state: Mapping[str, Any]) -> JsonObject:
    autonomous = candidate["autonomous"]
    selector = autonomous["rollout"]["selector"]
    pause = autonomous["rollout"]["pause"]
    row: JsonObject = {
        "timestamp": state["updatedAt"],
        "category": "fleet_policy_candidate",
        "fleetId": state["fleetId"],
        "traceId": state["traceId"],
        "mode": state["mode"],
        "candidateId": candidate["candidateId"],
        "loopId": candidate["loopId"],
        "candidateCategory": candidate["category"],
        "severity": candidate["severity"],
        "confidence": candidate["confidence"],
        "recommendedIntent": candidate["recommendedIntent"],
        "suppressed": candidate["suppressed"],
        "suppressionReason": candidate["suppressionReason"],
        "suppressionScope": candidate["suppressionScope"],
        "suppressionSource": candidate["suppressionSource"],
        "autonomousEligible": autonomous["eligible"],
        "autonomousManualOnly": autonomous["manualOnly"],
        "autonomousReasons": autonomous["reasons"],
        # Explicit booleans (the reference dropped these keys when false).
        "autonomousRolloutInScope": selector["inScope"],
        "autonomousRolloutInCohort": selector["inCohort"],
        "autonomousRolloutBucket": selector["bucket"],
        "autonomousRolloutPauseActive": pause["active"],
        "autonomousRolloutPauseReasons": pause["reasons"],
        "autonomousAutoPauseActive": pause["auto"]["active"],
        "autonomousAutoPauseReasons": pause["auto"]["reasons"],
        **_shadow_history_fields(autonomous.get("shadow")),
    }
    return {key: value for key, value in row.items() if value is not None}


def _shadow_history_fields(shadow: Mapping[str, Any] | None) -> JsonObject:
    """A shadow decision in the history row: its cooldown and caps are read back from here."""
    if shadow is None:
        return {}
    return {
        "autonomousShadowDecision": shadow["decision"],
        _SHADOW_FLAG: shadow["decision"] == "execute",
        "autonomousShadowReasons": shadow["reasons"],
    }


@dataclasses.dataclass(frozen=True)
class _PolicyInputs:
    """The registry's ``policy`` block, read once, with its defaults."""

    mode: str
    suppressions: Mapping[str, Any]
    controls: JsonObject
    governance: Mapping[str, Any]
    rollout: Mapping[str, Any]

    @classmethod
    def read(cls, registry: Mapping[str, Any]) -> _PolicyInputs:
        policy = registry.get("policy") or {}
        controls = dict(policy.get("autonomous") or {})
        return cls(
            mode=policy.get("mode") or "advisory",
            suppressions=policy.get("suppressions") or {},
            controls=controls,
            governance=controls.get("governance") or {},
            rollout=controls.get("rollout") or {},
        )


@dataclasses.dataclass(frozen=True)
class HistoryNeeds:
    """What of the policy history one evaluation reads (issue 12: not the whole, ever-growing log).

    ``since``: rows older than this change no decision (None: every row is needed);
    ``carried_hidden``: the suppressions whose hidden-signal counts come from the previous
    evaluation's state instead of their window's rows (``suppressions.carry_hidden``).
    """

    since: dt.datetime | None
    carried_hidden: dict[str, dict[str, int]]

    def is_older(self, row: Any) -> bool:
        """True for a row older than ``since`` (a log read backwards stops there)."""
        if self.since is None or not isinstance(row, Mapping):
            return False
        moment = parse_ts(row.get("timestamp"))
        return moment is not None and moment < self.since


def compute_history_needs(
    *,
    registry: Mapping[str, Any],
    fleet_state: Mapping[str, Any],
    previous_state: Mapping[str, Any] | None,
    dedupe_window_seconds: int,
    trace_id: str,
    now: dt.datetime,
) -> HistoryNeeds:
    """How far back ``build_policy_evaluation`` needs the history: the dedupe window and the
    autonomous cooldown (a row older than both starts no window), the rows of this policy trace
    (written no earlier than its fleet pass started), and the windows of the suppressions whose
    counts cannot be carried (a new or changed entry is read back to its start once)."""
    policy = _PolicyInputs.read(registry)
    cooldown = _AutonomyControls.read(policy.mode, policy.controls).cooldown_seconds
    entries = suppression_rules.read_suppressions(registry.get("policy") or {}, now)
    carried = suppression_rules.carry_hidden(entries, previous_state)
    started = parse_ts(fleet_state.get("startedAt"))
    if trace_id != fleet_state.get("traceId") or started is None:
        return HistoryNeeds(None, carried)  # another trace's selections may lie anywhere
    since = min(now - dt.timedelta(seconds=max(dedupe_window_seconds, cooldown, 0)), started)
    for entry in entries:
        if entry.key in carried:
            continue
        if entry.starts_at is not None:
            since = min(since, entry.starts_at)
        elif entry.state == "unowned":
            return HistoryNeeds(None, carried)  # an unowned entry's window is the whole history
    return HistoryNeeds(since, carried)


_EXECUTION_COUNTS = (
    "executedIntentCount", "requestedIntentCount", "executedCount", "ambiguousCount", "failedCount",
)  # fmt: skip


def _is_autonomous_execution(row: Any) -> bool:
    return (
        isinstance(row, Mapping)
        and row.get("category") == "fleet_handoff_execute"
        and isinstance(row.get("execution"), Mapping)
        and row["execution"].get("mode") == "autonomous"
    )


def extend_execution_window(window: Sequence[Any], rows: Iterable[Any], keep: int) -> list[JsonObject]:
    """The autonomous executions auto-pause reads (``compute_autopause``), kept across evaluations:
    ``window`` plus the execution rows among ``rows``, each reduced to what auto-pause counts, the
    latest ``keep`` by timestamp (issue 12: the handoff telemetry is then read only from where the
    last evaluation stopped)."""
    kept = [dict(row) for row in window if _is_autonomous_execution(row)]
    for row in rows:
        if _is_autonomous_execution(row):
            execution = row["execution"]
            counts = {key: execution[key] for key in _EXECUTION_COUNTS if key in execution}
            kept.append(
                {
                    "timestamp": row.get("timestamp"),
                    "category": "fleet_handoff_execute",
                    "execution": {"mode": "autonomous", **counts},
                }
            )
    kept.sort(key=lambda row: str(row.get("timestamp") or ""))
    return kept[-keep:] if keep > 0 else []


def build_policy_evaluation(
    *,
    registry: Mapping[str, Any],
    fleet_state: Mapping[str, Any],
    history: Sequence[Any],
    handoff_telemetry: Sequence[Any],
    previous_state: Mapping[str, Any] | None,
    had_previous_state: bool,
    dedupe_window_seconds: int,
    trace_id: str,
    paths: PolicyPaths,
    now: dt.datetime,
    carried_hidden: Mapping[str, Mapping[str, int]] | None = None,
) -> PolicyEvaluation:
    """One policy run: candidates, suppression, cooldown, autonomy classification, and the rows to append.

    ``history`` may be only the rows ``compute_history_needs`` asks for, with its
    ``carried_hidden`` counts; the decisions are the same as over the whole log."""
    policy = _PolicyInputs.read(registry)
    entries = suppression_rules.read_suppressions(registry.get("policy") or {}, now)
    candidates = _base_candidates(fleet_state)
    _suppress(candidates, suppression_rules.active_suppressions(entries), history, dedupe_window_seconds, now)
    # Unlike the reference, pause metrics are computed even with zero candidates.
    pause = compute_autopause(policy.rollout, handoff_telemetry)
    _classify(
        candidates,
        mode=policy.mode,
        controls=policy.controls,
        pause=pause,
        history=history,
        trace_id=trace_id,
        governance_expired=compute_governance_expired(policy.governance, policy.mode, now),
        now=now,
    )
    state = _build_policy_state(
        policy, fleet_state, candidates, pause, dedupe_window_seconds, trace_id, paths, now
    )
    _report_suppressions(state, entries, candidates, history, now, carried_hidden)
    return PolicyEvaluation(
        state=state,
        governance_event=build_governance_event(
            previous_state, state, had_previous=had_previous_state, paths=paths, now=now
        ),
        history_rows=[_history_row(candidate, state) for candidate in candidates],
        telemetry_row=_policy_telemetry_row(state),
    )


def _report_suppressions(
    state: JsonObject,
    entries: Sequence[suppression_rules.Suppression],
    candidates: Sequence[JsonObject],
    history: Sequence[Any],
    now: dt.datetime,
    carried: Mapping[str, Mapping[str, int]] | None,
) -> None:
    """Each suppression's terms, state and what it hid (``suppressionState.entries``), with reason codes."""
    hidden = suppression_rules.count_hidden(entries, candidates, history, now, carried)
    state["suppressionState"]["entries"] = suppression_rules.build_suppression_report(entries, hidden)
    states = {s.state for s in entries}
    for state_name, code in (
        ("expired", "fleet_suppressions_expired"),
        ("expiring", "fleet_suppressions_expiring"),
    ):
        if state_name in states:
            state["reasonCodes"].append(code)


def _suppress(
    candidates: list[JsonObject],
    suppressions: Mapping[str, Any],
    history: Sequence[Any],
    window: int,
    now: dt.datetime,
) -> None:
    """Attach the suppression fields: registry suppressions first, then the advisory dedupe window."""
    last_unsuppressed = _history_index(history, "suppressed", False)
    for candidate in candidates:
        found = _suppression(candidate, suppressions)
        scope: str | None = None
        source: str | None = None
        reason: str | None = None
        last = last_unsuppressed.get(candidate["candidateId"])
        active, remaining = _window(last, now, window)
        if found is not None:
            scope, source, reason = found[0], found[1], "registry_policy_suppression"
        elif active:
            scope, source, reason = (
                "cooldown",
                "policy.noiseControls.dedupeWindowSeconds",
                "advisory_cooldown_active",
            )
        candidate.update(
            {
                "suppressionScope": scope,
                "suppressed": reason is not None,
                "suppressionReason": reason,
                "suppressionSource": source,
                "cooldown": {
                    "enabled": window > 0,
                    "windowSeconds": window,
                    "active": active,
                    "remainingSeconds": remaining,
                    "lastUnsuppressedAt": format_ts(last) if (window > 0 and last) else None,
                },
            }
        )


def _candidate_summary(candidates: Sequence[JsonObject]) -> JsonObject:
    """The state's ``summary``: candidates by severity, confidence, category, suppression and autonomy."""
    unsuppressed = [c for c in candidates if not c["suppressed"]]
    return {
        "bySeverity": {
            level: sum(1 for c in candidates if c["severity"] == level)
            for level in ("critical", "warning", "info")
        },
        "byConfidence": {
            level: sum(1 for c in candidates if c["confidence"] == level)
            for level in ("high", "medium", "low")
        },
        "byCategory": _tally(c["category"] for c in candidates),
        "bySuppressionReason": _tally(c["suppressionReason"] for c in candidates if c["suppressed"]),
        "byAutonomy": {
            "eligible": sum(1 for c in unsuppressed if c["autonomous"]["eligible"]),
            "manualOnly": sum(1 for c in unsuppressed if c["autonomous"]["manualOnly"]),
        },
        "byAutonomyReason": _tally(reason for c in unsuppressed for reason in c["autonomous"]["reasons"]),
    }


def _autonomous_state(
    policy: _PolicyInputs, candidates: Sequence[JsonObject], pause: JsonObject, paths: PolicyPaths
) -> JsonObject:
    """The state's ``autonomous`` block: governance, controls and the rollout cohort counts."""
    rollout = policy.rollout
    selectors = [c["autonomous"]["rollout"]["selector"] for c in candidates]
    return {
        "enabled": policy.mode == GUARDED_AUTO,
        "governanceAuditFile": paths.governance_audit_file,
        "governance": build_governance_block(policy.governance, policy.mode),
        "controls": policy.controls,
        "rollout": {
            "canaryPercent": rollout.get("canaryPercent", DEFAULT_CANARY_PERCENT),
            "scopeLoopIds": list((rollout.get("scope") or {}).get("loopIds") or []),
            "selectorSalt": (rollout.get("selector") or {}).get("salt") or DEFAULT_SALT,
            "candidateBuckets": {
                "inScopeCount": sum(1 for s in selectors if s["inScope"]),
                "inCohortCount": sum(1 for s in selectors if s["inCohort"]),
                "outOfCohortCount": sum(1 for s in selectors if s["inScope"] and not s["inCohort"]),
            },
            "pause": pause,
        },
    }


def _build_policy_state(
    policy: _PolicyInputs,
    fleet_state: Mapping[str, Any],
    candidates: list[JsonObject],
    pause: JsonObject,
    window: int,
    trace_id: str,
    paths: PolicyPaths,
    now: dt.datetime,
) -> JsonObject:
    """The policy state document (``fleet-policy-state.json``) of this run."""
    summary = _candidate_summary(candidates)
    results = fleet_state.get("results")
    return {
        "schemaVersion": "v1",
        "updatedAt": format_ts(now),
        "fleetId": fleet_state.get("fleetId") or "default",
        "traceId": trace_id,
        "mode": policy.mode,
        "fleetStatus": fleet_state.get("status") or "unknown",
        "source": {"fleetStateFile": paths.fleet_state_file, "registryFile": paths.registry_file},
        "taxonomy": {
            "version": "v1",
            "categories": [
                {
                    "category": category,
                    "severity": _TAXONOMY[category][0],
                    "confidence": _TAXONOMY[category][1],
                }
                for category in CATEGORIES
            ],
        },
        "noiseControls": {
            "dedupeWindowSeconds": window,
            "policyHistoryFile": paths.policy_history_file,
            "handoffTelemetryFile": paths.handoff_telemetry_file,
        },
        "autonomous": _autonomous_state(policy, candidates, pause, paths),
        "evaluatedLoopCount": len(results) if isinstance(results, list) else 0,
        "candidateCount": len(candidates),
        "unsuppressedCount": sum(1 for c in candidates if not c["suppressed"]),
        "suppressedCount": sum(1 for c in candidates if c["suppressed"]),
        "cooldownSuppressedCount": sum(
            1 for c in candidates if c["suppressionReason"] == "advisory_cooldown_active"
        ),
        "autoEligibleCount": summary["byAutonomy"]["eligible"],
        "manualOnlyCount": summary["byAutonomy"]["manualOnly"],
        "candidates": candidates,
        "summary": summary,
        "suppressionState": {
            "suppressions": policy.suppressions,
            "precedence": ["loop", "global", "cooldown"],
            "allowedCategories": list(CATEGORIES),
        },
        "reasonCodes": _policy_reason_codes(policy.mode, candidates, summary["byAutonomyReason"], pause),
    }


def _policy_telemetry_row(state: Mapping[str, Any]) -> JsonObject:
    """The row of ``fleet-policy.jsonl``: the state's counts and blocks under ``summary``."""
    return {
        "timestamp": state["updatedAt"],
        "category": "fleet_policy",
        "fleetId": state["fleetId"],
        "traceId": state["traceId"],
        "mode": state["mode"],
        "summary": {
            key: state[key]
            for key in (
                "candidateCount",
                "unsuppressedCount",
                "suppressedCount",
                "cooldownSuppressedCount",
                "autoEligibleCount",
                "manualOnlyCount",
                "reasonCodes",
                "summary",
                "noiseControls",
                "autonomous",
            )
        },
    }
