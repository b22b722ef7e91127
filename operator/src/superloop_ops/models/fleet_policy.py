"""The FleetPolicy kind: the registry's ``policy`` block (fleet §1.2-§1.4, §3.10).

The reference validates the policy fail-closed with exact messages (fleet §1.3 #18-#56). Every
rule that concerns one FleetPolicy object alone is expressed here, as a schema constraint or a
`CelRule` carrying the reference's message, so ``kubectl apply`` refuses a bad policy. Two
rules need facts outside the object and stay with the operator: suppression keys and
``rollout.scope.loopIds`` must name loops declared by the Fleet, and ``reviewBy`` must be in the
future in ``guarded_auto`` mode (CEL has no clock; see `GovernanceSettings.review_expired`).

Defaults are the reference's normalisation defaults (fleet §1.4), with two deliberate fixes:
``autoPause.enabled: false`` is honoured (the reference turns it back into ``true``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from superloop_ops.models.common import (
    LOOP_ID_PATTERN,
    TIMESTAMP_PATTERN,
    CelRule,
    ConditionedStatus,
    CrdInfo,
    JsonObject,
    KindModel,
    LoopId,
    PrinterColumn,
    ShortText,
    SpecModel,
    StatusModel,
    Timestamp,
    list_default,
    nested,
    parse_timestamp,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_APPROVAL_MAX_AGE_SECONDS",
    "DEFAULT_CANARY_PERCENT",
    "DEFAULT_DRILL_EVIDENCE_KEY",
    "DEFAULT_MAX_INTENTS_PER_PASS",
    "DEFAULT_SALT",
    "DEFAULT_SUPPRESSION_EXPIRING_WITHIN_SECONDS",
    "DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS",
    "AllowSettings",
    "ApprovalSettings",
    "AutoPauseSettings",
    "AutonomousSettings",
    "Category",
    "DrillEvidenceConfigMapRef",
    "EffectiveRollout",
    "FleetPolicy",
    "FleetPolicySpec",
    "FleetPolicyStatus",
    "GovernanceSettings",
    "HandoffSettings",
    "NoiseControls",
    "PauseSettings",
    "PolicyMode",
    "PromotionSettings",
    "RolloutScope",
    "RolloutSelector",
    "RolloutSettings",
    "SafetySettings",
    "ShadowSettings",
    "SuppressionLimits",
    "SuppressionTerms",
    "ThresholdGates",
]

Category = Literal["reconcile_failed", "health_critical", "health_degraded"]
CATEGORIES: tuple[Category, ...] = ("reconcile_failed", "health_critical", "health_degraded")
PolicyMode = Literal["advisory", "shadow", "guarded_auto"]
DEFAULT_SALT = "fleet-autonomous-rollout-v1"
DEFAULT_CANARY_PERCENT = 100
"""The default ``autonomous.rollout.canaryPercent`` (FleetPolicy spec and registry documents alike)."""
DEFAULT_DRILL_EVIDENCE_KEY = "promotion.v1.json"
DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS = 7 * 86400
"""The longest a suppression may last (``expiresAt - startsAt``) unless the policy says otherwise."""
DEFAULT_SUPPRESSION_EXPIRING_WITHIN_SECONDS = 86400
"""How long before its expiry a suppression counts as expiring (condition, metric)."""
_GA = "policy.mode is guarded_auto"
_GOV = "policy.autonomous.governance"
# The same fields as the apiserver names them (the rules sit on the FleetPolicy's spec).
_API_GA = "spec.mode is guarded_auto"
_API_GOV = "spec.autonomous.governance"

NonNegInt = Annotated[int, Field(ge=0, le=2_147_483_647)]
Rate = Annotated[float, Field(ge=0, le=1)]
_SET: dict[str, Any] = {"x-kubernetes-list-type": "set"}


class NoiseControls(SpecModel):
    """Advisory de-duplication window (fleet §3.4)."""

    dedupe_window_seconds: NonNegInt = 300
    """A candidate seen again within this many seconds is not proposed again."""


def _default_categories() -> list[Category]:
    return ["reconcile_failed", "health_critical"]


def _default_intents() -> list[Literal["cancel"]]:
    return ["cancel"]


class AllowSettings(SpecModel):
    """Which candidates autonomous mode may act on."""

    categories: list[Category] = list_default(_default_categories, max_length=3)
    """Candidate categories autonomous mode may act on."""
    intents: list[Literal["cancel"]] = list_default(_default_intents, max_length=1)
    """Control intents autonomous mode may execute (only `cancel`)."""


class ThresholdGates(SpecModel):
    """Minimum severity and confidence for autonomous eligibility."""

    min_severity: Literal["critical", "warning", "info"] = "critical"
    """Lowest candidate severity eligible for autonomous execution."""
    min_confidence: Literal["high", "medium", "low"] = "high"
    """Lowest candidate confidence eligible for autonomous execution."""


class SafetySettings(SpecModel):
    """Caps, cooldown and the kill switch (which always wins)."""

    max_actions_per_run: NonNegInt = 1
    """Most autonomous executions in one fleet pass."""
    max_actions_per_loop: NonNegInt = 1
    """Most autonomous executions per loop within the cooldown."""
    cooldown_seconds: NonNegInt = 300
    """Seconds before the same loop may be acted on again."""
    kill_switch: bool = False
    """Blocks every autonomous action; always wins over promotion."""


def _review_after_change(m: GovernanceSettings) -> bool:
    if m.changed_at is None or m.review_by is None:
        return True
    return parse_timestamp(m.review_by) > parse_timestamp(m.changed_at)


class GovernanceSettings(SpecModel):
    """Who authorised autonomous mode, why, and until when (fleet §3.10)."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            # Compared only once both have the strict form, so a malformed date reports the
            # pattern violation alone instead of a CEL conversion error as well.
            rule=(
                "!has(self.changedAt) || !has(self.reviewBy)"
                f" || !self.changedAt.matches('{TIMESTAMP_PATTERN}')"
                f" || !self.reviewBy.matches('{TIMESTAMP_PATTERN}')"
                " || timestamp(self.reviewBy) > timestamp(self.changedAt)"
            ),
            message=f"{_GOV}.reviewBy must be after {_GOV}.changedAt",
            api_message=f"{_API_GOV}.reviewBy must be after {_API_GOV}.changedAt",
            field_path=".reviewBy",
            check=_review_after_change,
        ),
    )

    actor: ShortText | None = None
    """Who enabled or changed autonomous mode."""
    approval_ref: ShortText | None = None
    """Change or approval record (e.g. a CAB ticket)."""
    rationale: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """Why autonomous mode was enabled or changed (free text for reviewers)."""
    changed_at: Timestamp | None = None
    """When autonomous mode was enabled or last changed (YYYY-MM-DDTHH:MM:SSZ)."""
    review_by: Timestamp | None = None
    """Review deadline, after changedAt; once passed, guarded_auto fails closed."""

    def review_expired(self, now: datetime) -> bool:
        """True when ``reviewBy`` is absent or not after ``now`` (the fail-closed time gate)."""
        return self.review_by is None or parse_timestamp(self.review_by) <= now


class RolloutScope(SpecModel):
    """Loops autonomous mode may touch; empty means every loop of the fleet.

    The apiserver refuses duplicates structurally (a ``set`` list); the mirror keeps the
    reference's message. Whether each id is a declared loop is checked against the Fleet.
    """

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule=None,
            message="policy.autonomous.rollout.scope.loopIds entries must be unique",
            check=lambda m: len(set(m.loop_ids)) == len(m.loop_ids),
        ),
    )

    loop_ids: list[LoopId] = Field(default_factory=list, max_length=500, json_schema_extra=_SET)
    """Loop ids autonomous mode may touch; empty means every loop of the fleet."""


class RolloutSelector(SpecModel):
    """Salt of the deterministic cohort bucket (fleet §3.6)."""

    salt: Annotated[str, Field(min_length=1, max_length=253)] = DEFAULT_SALT
    """Salt of the deterministic cohort hash; changing it reshuffles the canary cohort."""


class PauseSettings(SpecModel):
    """Manual rollout pause."""

    manual: bool = False
    """Pause autonomous execution (a PromotionApply `rollback` sets it, `resume` clears it)."""


class AutoPauseSettings(SpecModel):
    """Auto-pause on ambiguity or failure spikes (fleet §3.7)."""

    enabled: bool = True
    """Pause autonomous execution on its own when recent executions fail or stay ambiguous."""
    lookback_executions: Annotated[int, Field(ge=1, le=10_000)] = 5
    """Recent autonomous executions the rates are computed over."""
    min_sample_size: Annotated[int, Field(ge=1, le=10_000)] = 3
    """Fewest executions before the rates are judged."""
    ambiguity_rate_threshold: Rate = 0.4
    """Share of ambiguous executions (0..1) that trips the pause."""
    failure_rate_threshold: Rate = 0.4
    """Share of failed executions (0..1) that trips the pause."""


class RolloutSettings(SpecModel):
    """Canary cohort, scope, pause and auto-pause of autonomous execution."""

    canary_percent: Annotated[int, Field(ge=0, le=100)] = DEFAULT_CANARY_PERCENT
    """Share of loops (by deterministic bucket) in the autonomous cohort, 0..100."""
    scope: RolloutScope = nested(RolloutScope)
    """Loops autonomous mode may touch."""
    selector: RolloutSelector = nested(RolloutSelector)
    """Cohort selection (hash salt)."""
    pause: PauseSettings = nested(PauseSettings)
    """Manual pause of autonomous execution (a PromotionApply `rollback` sets it, `resume` clears it)."""
    auto_pause: AutoPauseSettings = nested(AutoPauseSettings)
    """Automatic pause on failure or ambiguity spikes."""


class ShadowSettings(SpecModel):
    """Shadow autonomy: how its would-be decisions are matched to people and when they are trusted.

    In ``mode: shadow`` the guarded autonomous path runs in full and records what it would have
    executed, and executes nothing. Each decision is matched to what a person did for the same
    loop and reason within ``matchWindowSeconds``; the agreement rate is kept over the last
    ``agreementWindowSeconds``. When this block is present, the promotion gates include
    ``shadow_agreement`` (at least ``minSampleSize`` resolved decisions, agreement at least
    ``minAgreementRate``), which must pass before a canary expands into guarded_auto.
    """

    match_window_seconds: Annotated[int, Field(ge=60, le=604_800)] = 1800
    """How long after a shadow decision a person's action on the same loop and reason counts."""
    agreement_window_seconds: Annotated[int, Field(ge=3600, le=7_776_000)] = 604_800
    """Rolling window of the agreement figures (decisions made within it)."""
    min_agreement_rate: Rate = 0.9
    """The shadow_agreement gate's threshold (agreed / resolved)."""
    min_sample_size: Annotated[int, Field(ge=1, le=10_000)] = 20
    """The shadow_agreement gate's minimum number of resolved decisions."""


class AutonomousSettings(SpecModel):
    """Guarded autonomous execution settings."""

    allow: AllowSettings = nested(AllowSettings)
    """Which categories and intents may run autonomously."""
    thresholds: ThresholdGates = nested(ThresholdGates)
    """Severity and confidence gates."""
    safety: SafetySettings = nested(SafetySettings)
    """Caps, cooldown and the kill switch."""
    governance: GovernanceSettings | None = None
    """Who authorised autonomous mode and until when; required for `guarded_auto`."""
    rollout: RolloutSettings = nested(RolloutSettings)
    """Canary cohort, scope and pauses."""
    shadow: ShadowSettings | None = None
    """Shadow agreement settings (used in mode shadow; its presence adds the shadow_agreement gate)."""


class DrillEvidenceConfigMapRef(SpecModel):
    """A ConfigMap in the FleetPolicy's namespace holding the drill evidence document.

    The key holds the document the runbook writes to ``drills/promotion.v1.json``
    (``{schemaVersion, updatedAt, drills: [{id, status, completedAt}]}``); ``kubectl superloop
    drill record`` creates and updates it. The operator only reads it (RBAC ``get``).
    """

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the ConfigMap, in the FleetPolicy's namespace, that holds the drill evidence."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = (
        DEFAULT_DRILL_EVIDENCE_KEY
    )
    """Data key holding the JSON document."""


class PromotionSettings(SpecModel):
    """Where the promotion gates find evidence that only people can produce."""

    drill_evidence_config_map_ref: DrillEvidenceConfigMapRef | None = None
    """Drill evidence for the drill_recency gate, kept in a ConfigMap (GitOps-friendly).

    When set, PromotionApply evaluations read the drills from this ConfigMap instead of the
    Fleet journal's drills/promotion.v1.json: a missing ConfigMap or key gives
    promotion_drill_state_missing, a value that is not valid JSON (or whose drills is not an
    array) gives promotion_drill_state_invalid. When unset, the journal file is read.
    """


DEFAULT_APPROVAL_MAX_AGE_SECONDS = 300
"""How old an approval may be when the operator acts on it (FleetPolicy ``approvals.maxAgeSeconds``)."""


DEFAULT_MAX_INTENTS_PER_PASS = 10
"""How many HandoffIntents one Fleet pass proposes at most (FleetPolicy ``handoff.maxIntentsPerPass``)."""


class HandoffSettings(SpecModel):
    """How this fleet's planned intents become HandoffIntent objects (operator-only, issue 12)."""

    max_intents_per_pass: int = Field(default=DEFAULT_MAX_INTENTS_PER_PASS, ge=1, le=1000)
    """At most this many HandoffIntents are proposed by one Fleet pass; the planned intents
    beyond it are deferred to the following passes (most severe first, then by loop), neither
    lost nor proposed twice. The Fleet status counts them (handoff.pacing)."""


class ApprovalSettings(SpecModel):
    """How people's approvals of this fleet's HandoffIntents are honoured (operator-only, issue 15)."""

    max_age_seconds: int = Field(default=DEFAULT_APPROVAL_MAX_AGE_SECONDS, ge=10, le=86400)
    """An approval older than this (from its approved-at stamp) is not executed: it lapses, the
    HandoffIntent says so (Approved=False, reason ApprovalLapsed) and needs a fresh approval."""


def _governance_field_rule(cel_field: str, py_field: str) -> CelRule:
    return CelRule(
        rule=(
            "self.mode != 'guarded_auto' || !has(self.autonomous) || !has(self.autonomous.governance)"
            f" || has(self.autonomous.governance.{cel_field})"
        ),
        message=f"{_GOV}.{cel_field} is required when {_GA}",
        api_message=f"{_API_GOV}.{cel_field} is required when {_API_GA}",
        field_path=".autonomous.governance",
        check=lambda m: (
            m.mode != "guarded_auto"
            or m.autonomous.governance is None
            or getattr(m.autonomous.governance, py_field) is not None
        ),
    )


def _suppression_keys_ok(m: FleetPolicySpec) -> bool:
    pattern = re.compile(LOOP_ID_PATTERN)
    return all(k == "*" or pattern.match(k) for k in m.suppressions)


def _terms_order_ok(m: SuppressionTerms) -> bool:
    return parse_timestamp(m.expires_at) > parse_timestamp(m.starts_at)


class SuppressionTerms(SpecModel):
    """Who suppressed, why, and for how long: the terms of one ``suppressions`` entry.

    Modelled on an Alertmanager silence (createdBy, comment, startsAt, endsAt). The entry hides
    its categories from ``startsAt`` until ``expiresAt``; from ``expiresAt`` on the next fleet
    pass acts on them again, the FleetPolicy reports the entry as expired and posts an Event.
    """

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule=(
                f"!self.startsAt.matches('{TIMESTAMP_PATTERN}')"
                f" || !self.expiresAt.matches('{TIMESTAMP_PATTERN}')"
                " || timestamp(self.expiresAt) > timestamp(self.startsAt)"
            ),
            message="policy.suppressionTerms expiresAt must be after startsAt",
            api_message="spec.suppressionTerms expiresAt must be after startsAt",
            check=_terms_order_ok,
        ),
    )

    owner: ShortText
    """Who is answerable for the suppression (a person or a team)."""
    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    """Why the categories are hidden (an incident, a ticket)."""
    starts_at: Timestamp
    """From when the suppression applies (YYYY-MM-DDTHH:MM:SSZ); before it, the entry is pending."""
    expires_at: Timestamp
    """When it stops applying (YYYY-MM-DDTHH:MM:SSZ), at most maxDurationSeconds after startsAt."""


class SuppressionLimits(SpecModel):
    """Bounds on suppressions: their longest duration and the expiring warning."""

    max_duration_seconds: Annotated[int, Field(ge=60, le=31_536_000)] = (
        DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS
    )
    """The longest ``expiresAt - startsAt`` of any entry (the operator also caps older entries)."""
    expiring_within_seconds: Annotated[int, Field(ge=0, le=31_536_000)] = (
        DEFAULT_SUPPRESSION_EXPIRING_WITHIN_SECONDS
    )
    """A suppression expiring within this many seconds sets SuppressionsExpiring (0: never warn)."""


def _terms_name_suppressions(m: FleetPolicySpec) -> bool:
    return all(key in m.suppressions for key in m.suppression_terms)


def _terms_within_limit(m: FleetPolicySpec) -> bool:
    limit = m.suppression_limits.max_duration_seconds
    return all(
        (parse_timestamp(t.expires_at) - parse_timestamp(t.starts_at)).total_seconds() <= limit
        for t in m.suppression_terms.values()
    )


_TERM = "self.suppressionTerms[k]"
_SUPPRESSION_RULES: tuple[CelRule, ...] = (
    CelRule(
        rule=(
            "!has(self.suppressionTerms)"
            " || self.suppressionTerms.all(k, has(self.suppressions) && k in self.suppressions)"
        ),
        message="policy.suppressionTerms keys must name an entry of policy.suppressions",
        api_message="spec.suppressionTerms keys must name an entry of spec.suppressions",
        field_path=".suppressionTerms",
        check=_terms_name_suppressions,
    ),
    CelRule(
        rule=(
            "!has(self.suppressionTerms) || self.suppressionTerms.all(k,"
            f" !{_TERM}.startsAt.matches('{TIMESTAMP_PATTERN}')"
            f" || !{_TERM}.expiresAt.matches('{TIMESTAMP_PATTERN}')"
            # getSeconds() keeps the estimated cost bounded (duration(string(...)) is not).
            f" || (timestamp({_TERM}.expiresAt) - timestamp({_TERM}.startsAt)).getSeconds()"
            " <= (has(self.suppressionLimits) ? self.suppressionLimits.maxDurationSeconds"
            f" : {DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS}))"
        ),
        message="policy.suppressionTerms must not exceed suppressionLimits.maxDurationSeconds",
        api_message="spec.suppressionTerms must not exceed suppressionLimits.maxDurationSeconds",
        field_path=".suppressionTerms",
        check=_terms_within_limit,
    ),
    # New or changed entries need terms; an entry that predates terms and is left as it was is
    # kept (ratcheting through oldSelf), and the operator reports it as unowned.
    CelRule(
        rule=(
            "!has(self.suppressions) || self.suppressions.all(k,"
            " (has(self.suppressionTerms) && k in self.suppressionTerms)"
            " || (oldSelf.hasValue() && has(oldSelf.value().suppressions)"
            " && k in oldSelf.value().suppressions && oldSelf.value().suppressions[k] == self.suppressions[k]"
            " && !(has(oldSelf.value().suppressionTerms) && k in oldSelf.value().suppressionTerms)))"
        ),
        message="new policy.suppressions entries need policy.suppressionTerms",
        api_message="new spec.suppressions entries need spec.suppressionTerms",
        field_path=".suppressions",
        optional_old_self=True,
    ),
)


class FleetPolicySpec(SpecModel):
    """The fleet's policy: advisory or guarded autonomous mode, suppressions, rollout."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            rule="self.mode != 'guarded_auto' || (has(self.autonomous) && has(self.autonomous.governance))",
            message=f"{_GOV} is required when {_GA}",
            api_message=f"{_API_GOV} is required when {_API_GA}",
            field_path=".autonomous",
            check=lambda m: m.mode != "guarded_auto" or m.autonomous.governance is not None,
        ),
        _governance_field_rule("actor", "actor"),
        _governance_field_rule("approvalRef", "approval_ref"),
        _governance_field_rule("rationale", "rationale"),
        _governance_field_rule("changedAt", "changed_at"),
        _governance_field_rule("reviewBy", "review_by"),
        CelRule(
            rule=(
                "!has(self.suppressions)"
                f" || self.suppressions.all(k, k == '*' || k.matches('{LOOP_ID_PATTERN}'))"
            ),
            message="policy.suppressions keys must be a loopId or *",
            api_message="spec.suppressions keys must be a loopId or *",
            field_path=".suppressions",
            check=_suppression_keys_ok,
        ),
        *_SUPPRESSION_RULES,
    )

    mode: PolicyMode = "advisory"
    """`advisory` proposes only; `shadow` runs the autonomous path and records what it would have
    executed, executing nothing; `guarded_auto` may execute eligible intents (needs governance)."""
    suppressions: dict[str, Annotated[list[Category], Field(max_length=3)]] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 501},
    )
    """loopId (or `*`) to categories whose candidates are suppressed (terms in suppressionTerms)."""
    suppression_terms: dict[str, SuppressionTerms] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 501},
    )
    """Owner, reason, startsAt and expiresAt of each suppressions entry, under the same key."""
    suppression_limits: SuppressionLimits = nested(SuppressionLimits)
    noise_controls: NoiseControls = nested(NoiseControls)
    """De-duplication of proposed candidates."""
    autonomous: AutonomousSettings = nested(AutonomousSettings)
    """Guarded autonomous execution settings."""
    promotion: PromotionSettings | None = None
    """Promotion evidence sources (drill evidence ConfigMap); not part of the registry policy."""
    approvals: ApprovalSettings = nested(ApprovalSettings)
    """How old an approval may be when acted on; not part of the registry policy."""
    handoff: HandoffSettings = nested(HandoffSettings)
    """How many HandoffIntents one pass proposes; not part of the registry policy."""


class EffectiveRollout(StatusModel):
    """The rollout posture in force: spec, moved by PromotionApply objects, re-based on a new generation."""

    canary_percent: int | None = None
    """Canary share in force."""
    manual_pause: bool | None = None
    """Manual pause in force."""
    based_on_generation: int | None = None
    """Spec generation the posture was derived from (a new generation re-bases it)."""
    last_apply: str | None = None
    """The PromotionApply that last moved the posture."""
    changed_at: str | None = None
    """When the posture last moved (YYYY-MM-DDTHH:MM:SSZ)."""
    governance: JsonObject | None = None
    """Governance recorded by the last PromotionApply, as-is."""


class FleetPolicyStatus(ConditionedStatus):
    """Observed policy posture; ``policyState`` mirrors the reference's policy-state.json."""

    mode: str | None = None
    """Mode in force: `advisory`, `shadow` or `guarded_auto`."""
    governance_posture: str | None = None
    """Whether the governance is valid, missing or past its review date."""
    reason_codes: list[str] = Field(default_factory=list)
    """Reason codes of the policy posture, sorted."""
    effective_rollout: EffectiveRollout | None = None
    """Rollout posture in force (spec moved by PromotionApply objects)."""
    policy_state: JsonObject | None = None
    """The policy evaluation (the reference's policy-state.json), as-is."""
    governance: JsonObject | None = None
    """Governance in force, as-is."""
    pause: JsonObject | None = None
    """Pause state (manual and automatic), as-is."""
    last_evaluated_at: str | None = None
    """When the policy was last evaluated (YYYY-MM-DDTHH:MM:SSZ)."""
    suppressions: list[JsonObject] | None = None
    """Each suppression's owner, reason, expiry, state and what it hid (``core.fleet.suppressions``)."""
    shadow: JsonObject | None = None
    """Shadow decisions and their agreement with people over the rolling window."""


class FleetPolicy(KindModel):
    """A FleetPolicy object as the apiserver returns it."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="FleetPolicy",
        plural="fleetpolicies",
        singular="fleetpolicy",
        short_names=("sfp",),
        printer_columns=(
            PrinterColumn("Mode", ".spec.mode"),
            PrinterColumn("Canary", ".status.effectiveRollout.canaryPercent", type="integer"),
            PrinterColumn("Paused", ".status.effectiveRollout.manualPause", type="boolean"),
            PrinterColumn("Kill Switch", ".spec.autonomous.safety.killSwitch", type="boolean"),
            PrinterColumn("Governance", ".status.governancePosture"),
            PrinterColumn(
                "Shadow Agreement", ".status.shadow.agreement.agreementRate", type="number", priority=1
            ),
        ),
    )

    kind: Literal["FleetPolicy"] = "FleetPolicy"
    spec: FleetPolicySpec
    status: FleetPolicyStatus = Field(default_factory=FleetPolicyStatus)
