"""Shadow autonomy: the decisions guarded_auto would have taken, matched to what people then did.

In ``mode: shadow`` the policy rules classify every candidate as guarded_auto would (gates, caps,
cooldown, cohort, kill switch, pause) and record the result as ``autonomous.shadow``
(``decision``: ``execute`` or ``hold``, with its ``reasons``), while nothing is eligible to run
(``core.fleet.policy_rules``). This module keeps the ledger of those decisions, pure:

1. ``build_shadow_decisions``: one decision per unsuppressed shadow candidate, at most one open
   decision per loop and reason (category) at a time;
2. ``read_human_actions``: what people did, read from the HandoffIntent objects: a manual
   execution started (``approved``, or ``acted_differently`` for another intent type on the same
   loop) or the ``ops.superloop.dev/declined`` annotation (``rejected``);
3. ``update_ledger``: each open decision takes the first unconsumed action on the same loop and
   reason within ``matchWindowSeconds`` after it, or ``lapsed`` when the window ends;
4. ``compute_agreement``: agreement over the decisions made in the rolling window, overall, per
   decision, per intent type and per reason code.

Agreement: ``execute`` agrees with ``approved``; ``hold`` agrees with ``rejected`` and ``lapsed``.
Everything else is a disagreement. Open decisions are counted as pending, never in the rate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import ValidationError

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.models.fleet_policy import ShadowSettings
from superloop_ops.models.handoff_intent import DECLINED_ANNOTATION

__all__ = [
    "DECISIONS",
    "HUMAN_OUTCOMES",
    "STATE_SCHEMA",
    "HumanAction",
    "LedgerUpdate",
    "ShadowConfig",
    "build_shadow_decisions",
    "build_shadow_report",
    "compute_agreement",
    "compute_agrees",
    "evaluate_shadow_gate",
    "read_human_actions",
    "update_ledger",
]

Decision = Literal["execute", "hold"]
Human = Literal["approved", "rejected", "lapsed", "acted_differently"]
DECISIONS: tuple[Decision, ...] = ("execute", "hold")
HUMAN_OUTCOMES: tuple[Human, ...] = ("approved", "rejected", "lapsed", "acted_differently")
STATE_SCHEMA = "v1"
DECLINED_BY_ANNOTATION = f"{DECLINED_ANNOTATION}-by"
DECLINED_AT_ANNOTATION = f"{DECLINED_ANNOTATION}-at"
_AGREEING: frozenset[tuple[str, str]] = frozenset(
    {("execute", "approved"), ("hold", "rejected"), ("hold", "lapsed")}
)
_MAX_DECISIONS = 5000
_MAX_CONSUMED = 5000
_RECENT = 10


def compute_agrees(decision: str, human: str) -> bool:
    """Whether a person's outcome agrees with the shadow decision (the table in the docstring)."""
    return (decision, human) in _AGREEING


@dataclasses.dataclass(frozen=True)
class ShadowConfig:
    """The policy's ``autonomous.shadow`` block with its defaults (the model's)."""

    match_window_seconds: int
    agreement_window_seconds: int
    min_agreement_rate: float
    min_sample_size: int
    gate_required: bool

    @classmethod
    def read(cls, policy: Mapping[str, Any] | None) -> ShadowConfig:
        """From a registry ``policy`` block; the gate is required when ``autonomous.shadow`` is set.

        The block is parsed by the model; one that does not parse (a hand-edited registry file the
        promotion gates read unvalidated) gives the model's defaults, the gate still required.
        """
        autonomous = (policy or {}).get("autonomous")
        raw = autonomous.get("shadow") if isinstance(autonomous, Mapping) else None
        try:
            settings = ShadowSettings.model_validate(raw if isinstance(raw, Mapping) else {})
        except ValidationError:
            settings = ShadowSettings()
        return cls(
            match_window_seconds=settings.match_window_seconds,
            agreement_window_seconds=settings.agreement_window_seconds,
            min_agreement_rate=settings.min_agreement_rate,
            min_sample_size=settings.min_sample_size,
            gate_required=isinstance(raw, Mapping),
        )

    def to_json(self) -> JsonObject:
        return {
            "matchWindowSeconds": self.match_window_seconds,
            "agreementWindowSeconds": self.agreement_window_seconds,
            "minAgreementRate": _number(self.min_agreement_rate),
            "minSampleSize": self.min_sample_size,
            "gateRequired": self.gate_required,
        }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _rate(agreed: int, resolved: int) -> int | float | None:
    return _number(round(agreed / resolved, 4)) if resolved else None


# ---------------------------------------------------------------------------------------------
# decisions


def _open_keys(decisions: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    return {(str(d["loopId"]), str(d["category"])) for d in decisions if d.get("human") is None}


def build_shadow_decisions(
    policy_state: Mapping[str, Any], ledger: Sequence[Mapping[str, Any]]
) -> list[JsonObject]:
    """New decisions of this pass: unsuppressed shadow candidates without an open decision."""
    open_keys = _open_keys(ledger)
    decided_at = str(policy_state.get("updatedAt"))
    new: list[JsonObject] = []
    for candidate in policy_state.get("candidates") or []:
        shadow = (candidate.get("autonomous") or {}).get("shadow") if isinstance(candidate, Mapping) else None
        if not isinstance(shadow, Mapping) or candidate.get("suppressed"):
            continue
        key = (str(candidate["loopId"]), str(candidate["category"]))
        if key in open_keys:
            continue
        open_keys.add(key)
        new.append(
            {
                "decisionId": f"{candidate['candidateId']}@{decided_at}",
                "decidedAt": decided_at,
                "traceId": policy_state.get("traceId"),
                "loopId": key[0],
                "category": key[1],
                "intent": candidate.get("recommendedIntent"),
                "decision": shadow["decision"],
                "reasons": list(shadow.get("reasons") or []),
                "human": None,
            }
        )
    return new


# ---------------------------------------------------------------------------------------------
# what people did


@dataclasses.dataclass(frozen=True)
class HumanAction:
    """One person's action on a HandoffIntent: a manual execution started, or a decline."""

    fingerprint: str
    loop_id: str
    category: str | None
    intent: str
    kind: Literal["approved", "rejected"]
    at: dt.datetime
    by: str
    intent_name: str


def _candidate_loop_id(spec: Mapping[str, Any], names_to_ids: Mapping[str, str]) -> str:
    candidate_id = (spec.get("candidate") or {}).get("candidateId")
    if isinstance(candidate_id, str) and ":" in candidate_id:
        return candidate_id.split(":")[0]
    loop_name = str((spec.get("loopRef") or {}).get("name") or "")
    return names_to_ids.get(loop_name, loop_name)


def _manual_execution(name: str, body: Mapping[str, Any], base: dict[str, Any]) -> HumanAction | None:
    status = body.get("status") or {}
    started = parse_ts(status.get("startedAt"))
    if status.get("mode") != "manual" or started is None:
        return None
    key = str(status.get("idempotencyKey") or "")
    return HumanAction(
        fingerprint=f"{name}|approved|{key}", kind="approved", at=started,
        by=str(status.get("approvedBy") or ""), **base,
    )  # fmt: skip


def _decline(
    name: str, body: Mapping[str, Any], base: dict[str, Any], now: dt.datetime
) -> HumanAction | None:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(DECLINED_ANNOTATION, "")).lower() != "true":
        return None
    stamp = str(annotations.get(DECLINED_AT_ANNOTATION) or "")
    by = str(annotations.get(DECLINED_BY_ANNOTATION) or "")
    return HumanAction(
        fingerprint=f"{name}|rejected|{by}|{stamp}", kind="rejected", at=parse_ts(stamp) or now, by=by,
        **base,
    )  # fmt: skip


def read_human_actions(
    intents: Iterable[Mapping[str, Any]], names_to_ids: Mapping[str, str], now: dt.datetime
) -> list[HumanAction]:
    """People's actions on the HandoffIntent objects, oldest first (autonomous executions are not).

    A decline without ``ops.superloop.dev/declined-at`` counts from when it is first seen (``now``).
    """
    actions: list[HumanAction] = []
    for body in intents:
        spec = body.get("spec") or {}
        name = str((body.get("metadata") or {}).get("name") or "")
        base: dict[str, Any] = {
            "loop_id": _candidate_loop_id(spec, names_to_ids),
            "category": (spec.get("candidate") or {}).get("category"),
            "intent": str(spec.get("intent") or ""),
            "intent_name": name,
        }
        action = _manual_execution(name, body, base) or _decline(name, body, base, now)
        if action is not None:
            actions.append(action)
    return sorted(actions, key=lambda a: (a.at, a.fingerprint))


def _match_kind(decision: Mapping[str, Any], action: HumanAction) -> Human | None:
    """What this action means for this decision (None: it is about something else)."""
    if action.loop_id != decision["loopId"]:
        return None
    if action.kind == "approved" and action.intent != decision["intent"]:
        return "acted_differently"
    if action.category != decision["category"]:
        return None
    return action.kind


# ---------------------------------------------------------------------------------------------
# the ledger


@dataclasses.dataclass(frozen=True)
class LedgerUpdate:
    """The ledger after one pass, and the journal rows of what changed in it."""

    decisions: list[JsonObject]
    consumed: list[str]
    new_rows: list[JsonObject]
    resolved_rows: list[JsonObject]


def _resolve(decision: JsonObject, human: Human, at: dt.datetime, action: HumanAction | None) -> JsonObject:
    resolved = dict(decision)
    resolved.update(
        {
            "human": human,
            "humanAt": format_ts(at),
            "humanBy": action.by if action else None,
            "humanIntent": action.intent_name if action else None,
            "agreed": compute_agrees(str(decision["decision"]), human),
        }
    )
    return resolved


def _resolve_open(
    decision: JsonObject,
    actions: Sequence[HumanAction],
    consumed: set[str],
    config: ShadowConfig,
    now: dt.datetime,
) -> JsonObject | None:
    decided = parse_ts(decision.get("decidedAt")) or now
    deadline = decided + dt.timedelta(seconds=config.match_window_seconds)
    for action in actions:
        if action.fingerprint in consumed or not decided <= action.at <= deadline:
            continue
        human = _match_kind(decision, action)
        if human is not None:
            consumed.add(action.fingerprint)
            return _resolve(decision, human, action.at, action)
    if now >= deadline:
        return _resolve(decision, "lapsed", deadline, None)
    return None


def _row(category: str, decision: Mapping[str, Any], fleet_id: str, now: dt.datetime) -> JsonObject:
    """A ``telemetry/shadow.jsonl`` row (``category`` is the row's kind, as in every journal row)."""
    fields = {k: v for k, v in decision.items() if k != "category"}
    return {
        "timestamp": format_ts(now), "category": category, "fleetId": fleet_id,
        "candidateCategory": decision.get("category"), **fields,
    }  # fmt: skip


def update_ledger(
    *,
    decisions: Sequence[Mapping[str, Any]],
    consumed: Iterable[str],
    policy_state: Mapping[str, Any] | None,
    actions: Sequence[HumanAction],
    config: ShadowConfig,
    fleet_id: str,
    now: dt.datetime,
) -> LedgerUpdate:
    """One pass: resolve the open decisions, add this pass's new ones, drop those past the window.

    New decisions are added after the resolution, so a loop whose decision was just resolved can
    get a fresh one in the same pass (its candidate was proposed again).
    """
    spent = set(consumed)
    by_loop: dict[str, list[HumanAction]] = {}
    for action in actions:  # in their order (oldest first), per loop
        by_loop.setdefault(action.loop_id, []).append(action)
    resolved_rows: list[JsonObject] = []
    ledger: list[JsonObject] = []
    for decision in decisions:
        entry = dict(decision)
        if entry.get("human") is None:
            done = _resolve_open(entry, by_loop.get(str(entry.get("loopId")), []), spent, config, now)
            if done is not None:
                entry = done
                resolved_rows.append(_row("fleet_shadow_resolution", done, fleet_id, now))
        ledger.append(entry)
    new = build_shadow_decisions(policy_state, ledger) if policy_state is not None else []
    horizon = _horizon(config, now)
    kept = [entry for entry in [*ledger, *new] if entry.get("human") is None or _in_window(entry, horizon)]
    return LedgerUpdate(
        decisions=kept[-_MAX_DECISIONS:],
        consumed=sorted(spent)[-_MAX_CONSUMED:],
        new_rows=[_row("fleet_shadow_decision", d, fleet_id, now) for d in new],
        resolved_rows=resolved_rows,
    )


# ---------------------------------------------------------------------------------------------
# figures


def _horizon(config: ShadowConfig, now: dt.datetime) -> str:
    """The start of the rolling window, as a canonical timestamp."""
    return format_ts(now - dt.timedelta(seconds=config.agreement_window_seconds))


def _in_window(decision: Mapping[str, Any], horizon: str) -> bool:
    """Made after ``horizon``. ``decidedAt`` is the ledger's own canonical timestamp, which sorts as
    its instant does, so a string comparison decides (a malformed one is outside)."""
    decided = decision.get("decidedAt")
    return isinstance(decided, str) and len(decided) == len(horizon) and decided > horizon


def _tally(decisions: Sequence[Mapping[str, Any]]) -> JsonObject:
    resolved = [d for d in decisions if d.get("human") is not None]
    agreed = sum(1 for d in resolved if d.get("agreed") is True)
    return {
        "resolved": len(resolved),
        "agreed": agreed,
        "disagreed": len(resolved) - agreed,
        "pending": len(decisions) - len(resolved),
        "agreementRate": _rate(agreed, len(resolved)),
    }


def _by(decisions: Sequence[Mapping[str, Any]], key: str) -> JsonObject:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for decision in decisions:
        groups.setdefault(str(decision.get(key)), []).append(decision)
    return {name: _tally(group) for name, group in sorted(groups.items())}


def _matrix(decisions: Sequence[Mapping[str, Any]]) -> JsonObject:
    matrix: JsonObject = {}
    for decision in DECISIONS:
        mine = [d for d in decisions if d.get("decision") == decision]
        row = {human: sum(1 for d in mine if d.get("human") == human) for human in HUMAN_OUTCOMES}
        matrix[decision] = {**row, "pending": sum(1 for d in mine if d.get("human") is None)}
    return matrix


def _recent(decisions: Sequence[Mapping[str, Any]]) -> list[JsonObject]:
    keys = ("decidedAt", "loopId", "category", "intent", "decision", "reasons", "human", "humanAt", "agreed")
    return [{k: d.get(k) for k in keys} for d in decisions[-_RECENT:]]


def compute_agreement(
    decisions: Sequence[Mapping[str, Any]], config: ShadowConfig, now: dt.datetime
) -> JsonObject:
    """The agreement figures over the decisions made within the rolling window (pending excluded)."""
    horizon = _horizon(config, now)
    window = [d for d in decisions if _in_window(d, horizon)]
    return {
        "evaluatedAt": format_ts(now),
        "windowSeconds": config.agreement_window_seconds,
        "matchWindowSeconds": config.match_window_seconds,
        "decisions": len(window),
        **_tally(window),
        "byDecision": _matrix(window),
        "byIntent": _by(window, "intent"),
        "byReasonCode": _by(window, "category"),
        "recent": _recent(window),
    }


def evaluate_shadow_gate(
    config: ShadowConfig, agreement: Mapping[str, Any] | None, evidence: str = "ok"
) -> tuple[list[str], JsonObject]:
    """The shadow_agreement gate: (reasons, detail). A missing or unreadable ledger fails closed."""
    reasons: list[str] = []
    resolved = int((agreement or {}).get("resolved") or 0)
    rate = (agreement or {}).get("agreementRate")
    if evidence in ("missing", "invalid"):
        reasons.append(f"promotion_shadow_evidence_{evidence}")
    if resolved < config.min_sample_size:
        reasons.append("promotion_shadow_sample_insufficient")
    if isinstance(rate, int | float) and rate < config.min_agreement_rate:
        reasons.append("promotion_shadow_agreement_below_threshold")
    detail: JsonObject = {
        "minAgreementRate": _number(config.min_agreement_rate),
        "minSampleSize": config.min_sample_size,
        "windowSeconds": config.agreement_window_seconds,
        "resolved": resolved,
        "agreed": int((agreement or {}).get("agreed") or 0),
        "pending": int((agreement or {}).get("pending") or 0),
        "agreementRate": rate,
        "byIntent": (agreement or {}).get("byIntent") or {},
        "byReasonCode": (agreement or {}).get("byReasonCode") or {},
    }
    return reasons, detail


def build_shadow_report(
    state: Mapping[str, Any], config: ShadowConfig, ledger_file: str, now: dt.datetime
) -> JsonObject:
    """The ``fleet shadow`` document: the figures recomputed at ``now`` and the gate's verdict."""
    raw = state.get("decisions")
    decisions = [d for d in raw if isinstance(d, Mapping)] if isinstance(raw, list) else []
    agreement = compute_agreement(decisions, config, now)
    reasons, detail = evaluate_shadow_gate(config, agreement)
    return {
        "schemaVersion": STATE_SCHEMA,
        "generatedAt": format_ts(now),
        "fleetId": state.get("fleetId"),
        "mode": state.get("mode"),
        "ledgerFile": ledger_file,
        "ledgerUpdatedAt": state.get("updatedAt"),
        "config": config.to_json(),
        "agreement": agreement,
        "gate": {
            "name": "shadow_agreement",
            "required": config.gate_required,
            "status": "fail" if reasons else "pass",
            "reasons": reasons,
            **{k: detail[k] for k in ("minAgreementRate", "minSampleSize", "resolved", "agreementRate")},
        },
    }
