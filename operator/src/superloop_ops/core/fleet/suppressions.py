"""Suppressions with an owner, a reason and an expiry: which apply, what they hid, what expires.

The registry's ``policy.suppressions`` maps a loopId (or ``*``) to the categories whose
candidates are hidden (fleet §3.3). ``policy.suppressionTerms`` gives each entry, under the same
key, an ``owner``, a ``reason``, a ``startsAt`` and an ``expiresAt`` (``models.fleet_policy``);
``policy.suppressionLimits`` bounds their duration and says when one counts as expiring.

An entry applies while ``startsAt <= now < expiresAt``, where ``expiresAt`` is capped at
``startsAt + maxDurationSeconds`` (the CRD refuses longer entries; a registry file or an older
object may still hold one). Before ``startsAt`` it is ``pending``, from the expiry on it is
``expired``, and within ``expiringWithinSeconds`` of the expiry (boundary included) it is
``expiring``. An entry without terms (a registry file in the reference's format, or an object
that predates terms and has not been changed since) keeps applying as the reference does and is
reported ``unowned``.

What an entry hid: the policy history rows (one per candidate per pass) that it suppressed
inside its window, plus this pass's candidates, counted by category. Each category is a reason
code of the candidate taxonomy, a closed set, so the counts stay bounded.

Pure: ``now`` is an argument, no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from superloop_ops.core.common.jsonutil import JsonObject, format_ts, parse_ts
from superloop_ops.core.common.status_conditions import ConditionSpec
from superloop_ops.models import conditions as model_conditions
from superloop_ops.models.fleet_policy import (
    DEFAULT_SUPPRESSION_EXPIRING_WITHIN_SECONDS,
    DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS,
)

__all__ = [
    "SUPPRESSION_STATES",
    "Hidden",
    "Suppression",
    "SuppressionEvent",
    "SuppressionLimits",
    "active_suppressions",
    "build_suppression_report",
    "build_suppression_status",
    "build_suppression_table",
    "carry_hidden",
    "compute_suppression_events",
    "compute_suppressions_condition",
    "count_hidden",
    "format_duration",
    "read_suppressions",
    "suppression_errors",
]

SuppressionState = Literal["pending", "active", "expiring", "expired", "unowned"]
SUPPRESSION_STATES: tuple[SuppressionState, ...] = ("pending", "active", "expiring", "expired", "unowned")
_APPLYING: frozenset[str] = frozenset({"active", "expiring", "unowned"})
_POLICY_SUPPRESSION = "registry_policy_suppression"
_TERM_KEYS = ("owner", "reason", "startsAt", "expiresAt")


@dataclasses.dataclass(frozen=True)
class SuppressionLimits:
    """``policy.suppressionLimits`` with its defaults (``models.fleet_policy`` holds them)."""

    max_duration_seconds: int = DEFAULT_SUPPRESSION_MAX_DURATION_SECONDS
    expiring_within_seconds: int = DEFAULT_SUPPRESSION_EXPIRING_WITHIN_SECONDS

    @classmethod
    def read(cls, policy: Mapping[str, Any]) -> SuppressionLimits:
        raw = policy.get("suppressionLimits")
        limits = raw if isinstance(raw, Mapping) else {}
        return cls(
            max_duration_seconds=_int_or(limits.get("maxDurationSeconds"), cls.max_duration_seconds),
            expiring_within_seconds=_int_or(limits.get("expiringWithinSeconds"), cls.expiring_within_seconds),
        )


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclasses.dataclass(frozen=True)
class Suppression:
    """One ``suppressions`` entry and its terms, as they stand at ``now``."""

    key: str
    categories: tuple[str, ...]
    state: SuppressionState
    owner: str | None = None
    reason: str | None = None
    starts_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    """The effective expiry: the declared one, capped at startsAt + maxDurationSeconds."""
    declared_expires_at: dt.datetime | None = None
    expires_in_seconds: int | None = None

    @property
    def scope(self) -> str:
        return "global" if self.key == "*" else "loop"

    @property
    def applies(self) -> bool:
        return self.state in _APPLYING

    @property
    def capped(self) -> bool:
        return self.declared_expires_at is not None and self.declared_expires_at != self.expires_at

    def covers(self, moment: dt.datetime) -> bool:
        """True when ``moment`` lies in the entry's window (always, for an unowned entry)."""
        if self.starts_at is None or self.expires_at is None:
            return self.state == "unowned"
        return self.starts_at <= moment < self.expires_at


def read_suppressions(policy: Mapping[str, Any], now: dt.datetime) -> list[Suppression]:
    """Every ``suppressions`` entry of a registry policy block with its state at ``now``, by key."""
    raw = policy.get("suppressions")
    entries = raw if isinstance(raw, Mapping) else {}
    terms_raw = policy.get("suppressionTerms")
    terms = terms_raw if isinstance(terms_raw, Mapping) else {}
    limits = SuppressionLimits.read(policy)
    out = [
        _read_entry(str(key), value, terms.get(key), limits, now)
        for key, value in entries.items()
        if isinstance(value, list)
    ]
    return sorted(out, key=lambda s: (s.key != "*", s.key))


def _read_entry(
    key: str, categories: list[Any], terms: Any, limits: SuppressionLimits, now: dt.datetime
) -> Suppression:
    cats = tuple(c for c in categories if isinstance(c, str))
    starts = parse_ts(terms.get("startsAt")) if isinstance(terms, Mapping) else None
    declared = parse_ts(terms.get("expiresAt")) if isinstance(terms, Mapping) else None
    if not isinstance(terms, Mapping) or starts is None or declared is None:
        return Suppression(key=key, categories=cats, state="unowned")
    expires = min(declared, starts + dt.timedelta(seconds=limits.max_duration_seconds))
    remaining = int((expires - now).total_seconds())
    return Suppression(
        key=key,
        categories=cats,
        state=_state(starts, expires, now, limits.expiring_within_seconds),
        owner=_str_or_none(terms.get("owner")),
        reason=_str_or_none(terms.get("reason")),
        starts_at=starts,
        expires_at=expires,
        declared_expires_at=declared,
        expires_in_seconds=max(remaining, 0),
    )


def _state(starts: dt.datetime, expires: dt.datetime, now: dt.datetime, warn: int) -> SuppressionState:
    if now < starts:
        return "pending"
    if now >= expires:
        return "expired"
    if warn > 0 and (expires - now).total_seconds() <= warn:
        return "expiring"
    return "active"


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def active_suppressions(entries: Iterable[Suppression]) -> dict[str, list[str]]:
    """The ``suppressions`` map the reference's rules apply this pass: no pending or expired entries."""
    return {s.key: list(s.categories) for s in entries if s.applies}


# ---------------------------------------------------------------------------------------------
# what each suppression hid


def _hidden_key(row: Mapping[str, Any], loop_key: str, category_key: str) -> tuple[str, str] | None:
    """(suppression key, category) of a candidate (or history row) a registry suppression hid."""
    if row.get("suppressed") is not True or row.get("suppressionReason") != _POLICY_SUPPRESSION:
        return None
    scope = row.get("suppressionScope")
    key = "*" if scope == "global" else row.get(loop_key) if scope == "loop" else None
    category = row.get(category_key)
    if not isinstance(key, str) or not isinstance(category, str):
        return None
    return key, category


@dataclasses.dataclass(frozen=True)
class Hidden:
    """What one suppression hid: this pass, and in all passes of its window (by category)."""

    now: dict[str, int]
    total: dict[str, int]

    @property
    def total_count(self) -> int:
        return sum(self.total.values())


def _stamp(moment: dt.datetime | None) -> str | None:
    return format_ts(moment) if moment else None


def _terms_of(s: Suppression) -> tuple[Any, ...]:
    return (list(s.categories), _stamp(s.starts_at), _stamp(s.expires_at))


def carry_hidden(
    entries: Sequence[Suppression], previous_state: Mapping[str, Any] | None
) -> dict[str, dict[str, int]]:
    """Per entry whose terms (categories, startsAt, expiresAt) are what the previous evaluation
    reported: the signals it had hidden by then. That evaluation's candidates are the history rows
    written since, and it counted them, so the entry's window need not be read again (issue 12:
    an evaluation's history reads do not grow with its suppressions' age)."""
    rows = ((previous_state or {}).get("suppressionState") or {}).get("entries")
    reported = {
        row.get("key"): row for row in (rows if isinstance(rows, list) else []) if isinstance(row, Mapping)
    }
    carried: dict[str, dict[str, int]] = {}
    for s in entries:
        row = reported.get(s.key)
        hidden = row.get("hiddenSignals") if row is not None else None
        if row is None or not isinstance(hidden, Mapping):
            continue
        if (row.get("categories"), row.get("startsAt"), row.get("expiresAt")) == _terms_of(s):
            carried[s.key] = {c: int(hidden.get(c) or 0) for c in s.categories}
    return carried


def count_hidden(
    entries: Sequence[Suppression],
    candidates: Sequence[Mapping[str, Any]],
    history: Sequence[Any],
    now: dt.datetime,
    carried: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Hidden]:
    """Per suppression key, the candidates it hides this pass and the signals it hid in its window.

    A signal is one candidate in one pass (one policy history row), so a loop that stays degraded
    for ten passes under a suppression counts ten. This pass's candidates are not in the history
    yet and are added once. An entry in ``carried`` (``carry_hidden``) starts from those counts
    and reads no history row.
    """
    carry = carried or {}
    by_key = {s.key: s for s in entries if s.key not in carry}
    current = {s.key: dict.fromkeys(s.categories, 0) for s in entries}
    total = {s.key: {c: carry.get(s.key, {}).get(c, 0) for c in s.categories} for s in entries}
    for candidate in candidates:
        found = _hidden_key(candidate, "loopId", "category")
        if found is not None and found[1] in current.get(found[0], {}):
            current[found[0]][found[1]] += 1
            total[found[0]][found[1]] += 1
    for row in history:
        found = _hidden_key(row, "loopId", "candidateCategory") if isinstance(row, Mapping) else None
        if found is None or found[0] not in by_key or found[1] not in total[found[0]]:
            continue
        moment = parse_ts(row.get("timestamp"))
        if moment is not None and moment <= now and by_key[found[0]].covers(moment):
            total[found[0]][found[1]] += 1
    return {key: Hidden(now=current[key], total=total[key]) for key in current}


def build_suppression_report(
    entries: Sequence[Suppression], hidden: Mapping[str, Hidden]
) -> list[JsonObject]:
    """The ``suppressionState.entries`` of the policy state: one row per entry, by key."""
    return [_report_row(s, hidden.get(s.key)) for s in entries]


def _report_row(s: Suppression, hidden: Hidden | None) -> JsonObject:
    counts = hidden or Hidden(now={}, total={})
    row: JsonObject = {
        "key": s.key,
        "scope": s.scope,
        "categories": list(s.categories),
        "state": s.state,
        "applies": s.applies,
        "owner": s.owner,
        "reason": s.reason,
        "startsAt": format_ts(s.starts_at) if s.starts_at else None,
        "expiresAt": format_ts(s.expires_at) if s.expires_at else None,
        "cappedByMaxDuration": s.capped,
        "expiresInSeconds": s.expires_in_seconds,
        "hidingNow": counts.now,
        "hiddenSignals": counts.total,
        "hiddenSignalCount": counts.total_count,
    }
    return {k: v for k, v in row.items() if v is not None}


def build_suppression_status(
    policy: Mapping[str, Any],
    now: dt.datetime,
    counted: Sequence[Mapping[str, Any]] | None,
) -> list[JsonObject]:
    """The FleetPolicy's ``status.suppressions``: each entry's state at ``now`` (from the spec) and
    what it hid, taken from ``counted`` (the last pass's report, or the previous status) for the
    same key and expiry."""
    entries = read_suppressions(policy, now)
    known = {(row.get("key"), row.get("expiresAt")): row for row in counted or () if isinstance(row, Mapping)}
    hidden: dict[str, Hidden] = {}
    for s in entries:
        row = known.get((s.key, format_ts(s.expires_at) if s.expires_at else None))
        if row is not None:
            hidden[s.key] = Hidden(now=_counts(row.get("hidingNow")), total=_counts(row.get("hiddenSignals")))
    return build_suppression_report(entries, hidden)


def _counts(value: Any) -> dict[str, int]:
    items = value.items() if isinstance(value, Mapping) else ()
    return {str(k): v for k, v in items if isinstance(v, int) and not isinstance(v, bool)}


# ---------------------------------------------------------------------------------------------
# registry validation (a registry file; the CRD checks objects)


def suppression_errors(policy: Any) -> list[str]:
    """Messages for ``policy.suppressionTerms`` and ``policy.suppressionLimits`` of a registry."""
    if not isinstance(policy, Mapping):
        return []
    errors = _limit_errors(policy.get("suppressionLimits"))
    terms = policy.get("suppressionTerms")
    if terms is None:
        return errors
    if not isinstance(terms, Mapping):
        return [*errors, "policy.suppressionTerms must be an object mapping suppression keys to terms"]
    declared = policy.get("suppressions")
    keys = set(declared) if isinstance(declared, Mapping) else set()
    for key, value in terms.items():
        errors += _term_errors(str(key), value, key in keys)
    return errors


def _limit_errors(limits: Any) -> list[str]:
    if limits is None:
        return []
    if not isinstance(limits, Mapping):
        return ["policy.suppressionLimits must be an object when present"]
    return [
        f"policy.suppressionLimits.{key} must be an integer >= {low} when present"
        for key, low in (("maxDurationSeconds", 60), ("expiringWithinSeconds", 0))
        if key in limits and not (_int_or(limits[key], low - 1) >= low)
    ]


def _term_errors(key: str, value: Any, declared: bool) -> list[str]:
    field = f"policy.suppressionTerms.{key}"
    if not declared:
        return [f"{field} must name an entry of policy.suppressions"]
    if not isinstance(value, Mapping):
        return [f"{field} must be an object"]
    missing = [k for k in _TERM_KEYS if not (isinstance(value.get(k), str) and value.get(k))]
    if missing:
        return [f"{field} needs {', '.join(missing)}"]
    starts, expires = parse_ts(value["startsAt"]), parse_ts(value["expiresAt"])
    if starts is None or expires is None:
        return [f"{field} startsAt and expiresAt must be timestamps (YYYY-MM-DDTHH:MM:SSZ)"]
    if expires <= starts:
        return [f"{field} expiresAt must be after startsAt"]
    return []


# ---------------------------------------------------------------------------------------------
# the FleetPolicy's condition and Events


def compute_suppressions_condition(entries: Sequence[Mapping[str, Any]]) -> ConditionSpec:
    """``SuppressionsExpiring`` from the status's entries: True while one is within its warning window."""
    expiring = [e for e in entries if e.get("state") == "expiring"]
    expired = [e for e in entries if e.get("state") == "expired"]
    if expiring:
        soonest = min(expiring, key=lambda e: int(e.get("expiresInSeconds") or 0))
        return ConditionSpec(
            model_conditions.SUPPRESSIONS_EXPIRING,
            "True",
            "SuppressionsExpiring",
            f"{len(expiring)} suppression(s) expire soon: {_keys(expiring)}; first {soonest.get('key')} "
            f"at {soonest.get('expiresAt')} (owner {soonest.get('owner')})",
        )
    if expired:
        return ConditionSpec(
            model_conditions.SUPPRESSIONS_EXPIRING,
            "False",
            "SuppressionsExpired",
            f"{len(expired)} suppression(s) expired and no longer apply: {_keys(expired)}",
        )
    return ConditionSpec(
        model_conditions.SUPPRESSIONS_EXPIRING, "False", "NoneExpiring", "no suppression expires soon"
    )


def _keys(entries: Sequence[Mapping[str, Any]]) -> str:
    keys = [str(e.get("key")) for e in entries]
    return ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")


@dataclasses.dataclass(frozen=True)
class SuppressionEvent:
    """A Kubernetes Event on the FleetPolicy for one suppression's transition."""

    type: str
    reason: str
    message: str


def compute_suppression_events(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]]
) -> list[SuppressionEvent]:
    """Events for the entries that became expired (or expiring) since the previous status, once each.

    An entry is the same suppression while its key and expiry are unchanged; a renewed entry (new
    ``expiresAt``) can expire again. With no previous status (the first write) nothing is posted.
    """
    if previous is None:
        return []
    before = {(e.get("key"), e.get("expiresAt")): e.get("state") for e in previous if isinstance(e, Mapping)}
    events: list[SuppressionEvent] = []
    for entry in current:
        was = before.get((entry.get("key"), entry.get("expiresAt")))
        state = entry.get("state")
        if state == was or (was is None and state != "expired"):
            continue
        if state == "expired":
            events.append(_event("Warning", "SuppressionExpired", entry, "expired and no longer applies"))
        elif state == "expiring" and was in ("active", "pending"):
            events.append(_event("Normal", "SuppressionExpiring", entry, "expires soon"))
    return events


def _event(kind: str, reason: str, entry: Mapping[str, Any], what: str) -> SuppressionEvent:
    cats = ",".join(str(c) for c in entry.get("categories") or [])
    return SuppressionEvent(
        type=kind,
        reason=reason,
        message=(
            f"suppression {entry.get('key')} [{cats}] {what} at {entry.get('expiresAt')}"
            f" (owner {entry.get('owner')}, reason: {entry.get('reason')};"
            f" hid {entry.get('hiddenSignalCount', 0)} signal(s))"
        )[:1024],
    )


# ---------------------------------------------------------------------------------------------
# the ``suppressions`` view (``superloop-ops fleet suppressions``, ``kubectl superloop suppressions``)

_COLUMNS = ("KEY", "CATEGORIES", "STATE", "OWNER", "EXPIRES IN", "HID", "REASON")


def format_duration(seconds: int) -> str:
    """The two largest units, as kubectl prints ages: ``90`` -> ``1m30s``, ``7140`` -> ``1h59m``,
    ``90061`` -> ``1d1h``; a zero second unit is left out (``3600`` -> ``1h``)."""
    value = max(seconds, 0)
    parts = [
        (value // 86400, "d"),
        (value % 86400 // 3600, "h"),
        (value % 3600 // 60, "m"),
        (value % 60, "s"),
    ]
    first = next((i for i, (n, _) in enumerate(parts) if n), len(parts) - 1)
    return "".join(f"{n}{unit}" for n, unit in parts[first : first + 2] if n) or "0s"


def _expires_in(row: Mapping[str, Any], now: dt.datetime) -> str:
    expires, starts = parse_ts(row.get("expiresAt")), parse_ts(row.get("startsAt"))
    if expires is None:
        return "never"
    state = row.get("state")
    if state == "pending" and starts is not None:
        return f"starts in {format_duration(int((starts - now).total_seconds()))}"
    if state == "expired" or expires <= now:
        return f"expired {format_duration(int((now - expires).total_seconds()))} ago"
    return format_duration(int((expires - now).total_seconds()))


def _hid(row: Mapping[str, Any]) -> str:
    counts = row.get("hiddenSignals")
    parts = [f"{k}={v}" for k, v in counts.items() if v] if isinstance(counts, Mapping) else []
    return f"{row.get('hiddenSignalCount', 0)}" + (f" ({', '.join(parts)})" if parts else "")


def build_suppression_table(
    rows: Sequence[Mapping[str, Any]], now: dt.datetime, lead: Sequence[tuple[str, str]] = ()
) -> list[list[str]]:
    """The suppressions as table cells, header first: owner, reason, expires in and what each hid.

    ``lead`` adds leading columns, each a (header, row key) pair (the plugin's NAMESPACE, POLICY).
    """
    header = [h for h, _ in lead] + list(_COLUMNS)
    body = [
        [str(row.get(key) or "") for _, key in lead]
        + [
            str(row.get("key")),
            ",".join(str(c) for c in row.get("categories") or []) or "-",
            str(row.get("state")),
            str(row.get("owner") or "-"),
            _expires_in(row, now),
            _hid(row),
            str(row.get("reason") or "-"),
        ]
        for row in rows
    ]
    return [header, *body]
