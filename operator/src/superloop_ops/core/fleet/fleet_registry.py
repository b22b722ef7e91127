"""Fleet registry (``registry.v1.json``): fail-closed validation and normalisation.

The registry is the one input every fleet command trusts, so validation collects *every*
problem, in a fixed order and with fixed wording (operators diff these messages), before any
command does work. Normalisation fills the documented defaults so downstream code never has to.

Two reference defects are fixed here (see docs/divergences.md):

* the reference treats ``false`` like a missing value, so ``enabled: false`` and
  ``autoPause.enabled: false`` silently became ``true``; we keep ``false``;
* non-object values where an object is expected crashed the reference validator; we report
  the documented message instead.

Other "false counts as absent" behaviour (for example ``policy.mode: false`` meaning advisory)
is kept, because it is harmless and keeps registries that pass the reference passing here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, parse_ts
from superloop_ops.core.fleet.suppressions import suppression_errors
from superloop_ops.models.fleet_policy import DEFAULT_CANARY_PERCENT, DEFAULT_SALT, ShadowSettings

__all__ = [
    "CATEGORIES",
    "DEFAULT_SALT",
    "INTENTS",
    "LoopNotFoundError",
    "build_normalized_registry",
    "compute_registry_errors",
    "select_registry_loop",
]

CATEGORIES: tuple[str, ...] = ("reconcile_failed", "health_critical", "health_degraded")
INTENTS: tuple[str, ...] = ("cancel",)
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
CONFIDENCES: tuple[str, ...] = ("high", "medium", "low")
_GUARDED = "guarded_auto"
_SHADOW = "shadow"


class LoopNotFoundError(LookupError):
    """``--loop`` named a loop the registry does not declare."""


def _present(value: Any) -> bool:
    """The reference's notion of "present": not missing, not null, not ``false``."""
    return value is not None and value is not False


def _get(obj: Any, key: str) -> Any:
    """Field of an object, or None when ``obj`` is not an object (its own error is reported)."""
    if isinstance(obj, Mapping):
        return obj.get(key)
    return None


def _opt(obj: Any, key: str) -> Any:
    """Field value, or None when absent in the reference's sense."""
    value = _get(obj, key)
    return value if _present(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return _is_number(value) and float(value) == math.floor(value)


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and len(value) > 0


def _declared_loop_ids(loops: Any) -> set[str]:
    if not isinstance(loops, list):
        return set()
    return {loop_id for entry in loops if _non_empty_str(loop_id := _get(entry, "loopId"))}


def _object_error(value: Any, message: str) -> list[str]:
    """Error when a present value is not an object."""
    if _present(value) and not isinstance(value, Mapping):
        return [message]
    return []


def _int_min_error(value: Any, minimum: int, message: str) -> list[str]:
    if value is None or (_is_integer(value) and value >= minimum):
        return []
    return [message]


def _string_list_error(value: Any, field: str, allowed: Sequence[str], noun: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [f"{field} must be an array when present"]
    if not all(isinstance(item, str) for item in value):
        return [f"{field} entries must be strings"]
    if any(item not in allowed for item in value):
        return [f"{field} contains unsupported {noun}"]
    return []


def _enum_error(value: Any, field: str, allowed: Sequence[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, str):
        return [f"{field} must be a string when present"]
    if value not in allowed:
        return [f"{field} must be one of {', '.join(allowed)}"]
    return []


def _loop_errors(index: int, entry: Any) -> list[str]:
    prefix = f"loops[{index}]: "
    if not isinstance(entry, Mapping):
        return [prefix + "entry must be an object"]
    errors: list[str] = []
    if not _non_empty_str(_opt(entry, "loopId")):
        errors.append("loopId must be a non-empty string")
    enabled = entry.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        errors.append("enabled must be boolean when present")
    transport = _or_default(_opt(entry, "transport"), "local")
    if transport not in ("local", "sprite_service"):
        errors.append("transport must be local or sprite_service")
    sprite = _opt(entry, "sprite")
    errors += _object_error(sprite, "sprite must be an object when present")
    sprite_id = _opt(sprite, "id")
    if sprite_id is not None and not _non_empty_str(sprite_id):
        errors.append("sprite.id must be a non-empty string when present")
    service = _opt(entry, "service")
    errors += _object_error(service, "service must be an object when present")
    token_env = _opt(service, "tokenEnv")
    if token_env is not None and not _non_empty_str(token_env):
        errors.append("service.tokenEnv must be a non-empty string when present")
    attempts = _opt(service, "retryAttempts")
    if attempts is not None and not (_is_number(attempts) and attempts >= 1):
        errors.append("service.retryAttempts must be >= 1 when present")
    backoff = _opt(service, "retryBackoffSeconds")
    if backoff is not None and not (_is_number(backoff) and backoff >= 0):
        errors.append("service.retryBackoffSeconds must be >= 0 when present")
    if transport == "sprite_service":
        # The first present value wins, as in the reference: an empty service.baseUrl is fatal.
        base_url = _opt(service, "baseUrl")
        if base_url is None:
            base_url = _opt(sprite, "serviceBaseUrl")
        if not _non_empty_str(base_url):
            errors.append("sprite_service loops require service.baseUrl or sprite.serviceBaseUrl")
    errors += _object_error(_opt(entry, "metadata"), "metadata must be an object when present")
    return [prefix + message for message in errors]


def _governance_errors(governance: Any, mode: Any, now: dt.datetime) -> list[str]:
    base = "policy.autonomous.governance"
    errors = _object_error(governance, f"{base} must be an object when present")
    for key in ("actor", "approvalRef", "rationale"):
        value = _opt(governance, key)
        if value is not None and not _non_empty_str(value):
            errors.append(f"{base}.{key} must be a non-empty string when present")
    changed_raw = _opt(governance, "changedAt")
    review_raw = _opt(governance, "reviewBy")
    changed_at = parse_ts(changed_raw)
    review_by = parse_ts(review_raw)
    if changed_raw is not None and changed_at is None:
        errors.append(f"{base}.changedAt must be an ISO-8601 timestamp when present")
    if review_raw is not None and review_by is None:
        errors.append(f"{base}.reviewBy must be an ISO-8601 timestamp when present")
    ordered_badly = changed_at is not None and review_by is not None and review_by <= changed_at
    if ordered_badly:
        errors.append(f"{base}.reviewBy must be after {base}.changedAt")
    if mode != _GUARDED:
        return errors
    when = "when policy.mode is guarded_auto"
    if not isinstance(governance, Mapping):
        errors.append(f"{base} is required {when}")
    for key in ("actor", "approvalRef", "rationale"):
        if not _non_empty_str(_opt(governance, key)):
            errors.append(f"{base}.{key} is required {when}")
    if changed_at is None:
        errors.append(f"{base}.changedAt must be an ISO-8601 timestamp {when}")
    if review_by is None:
        errors.append(f"{base}.reviewBy must be an ISO-8601 timestamp {when}")
    if ordered_badly:
        errors.append(f"{base}.reviewBy must be after {base}.changedAt {when}")
    if review_by is not None and review_by <= now:
        errors.append(f"{base}.reviewBy must be in the future {when}")
    return errors


def _rollout_errors(rollout: Any, declared: set[str]) -> list[str]:
    base = "policy.autonomous.rollout"
    errors = _object_error(rollout, f"{base} must be an object when present")
    canary = _opt(rollout, "canaryPercent")
    if canary is not None and not (_is_integer(canary) and 0 <= canary <= 100):
        errors.append(f"{base}.canaryPercent must be an integer between 0 and 100 when present")
    scope = _opt(rollout, "scope")
    errors += _object_error(scope, f"{base}.scope must be an object when present")
    loop_ids = _opt(scope, "loopIds")
    field = f"{base}.scope.loopIds"
    if loop_ids is None:
        pass
    elif not isinstance(loop_ids, list):
        errors.append(f"{field} must be an array when present")
    elif not all(isinstance(item, str) for item in loop_ids):
        errors.append(f"{field} entries must be strings")
    elif any(item == "" for item in loop_ids):
        errors.append(f"{field} entries must be non-empty strings")
    elif len(set(loop_ids)) != len(loop_ids):
        errors.append(f"{field} entries must be unique")
    elif any(item not in declared for item in loop_ids):
        errors.append(f"{field} entries must reference declared loopIds")
    selector = _opt(rollout, "selector")
    errors += _object_error(selector, f"{base}.selector must be an object when present")
    salt = _opt(selector, "salt")
    if salt is not None:
        if not isinstance(salt, str):
            errors.append(f"{base}.selector.salt must be a string when present")
        elif salt == "":
            errors.append(f"{base}.selector.salt must be non-empty when present")
    pause = _opt(rollout, "pause")
    errors += _object_error(pause, f"{base}.pause must be an object when present")
    manual = _get(pause, "manual")
    if manual is not None and not isinstance(manual, bool):
        errors.append(f"{base}.pause.manual must be boolean when present")
    auto = _opt(rollout, "autoPause")
    errors += _object_error(auto, f"{base}.autoPause must be an object when present")
    enabled = _get(auto, "enabled")
    if enabled is not None and not isinstance(enabled, bool):
        errors.append(f"{base}.autoPause.enabled must be boolean when present")
    for key in ("lookbackExecutions", "minSampleSize"):
        errors += _int_min_error(
            _opt(auto, key), 1, f"{base}.autoPause.{key} must be an integer >= 1 when present"
        )
    for key in ("ambiguityRateThreshold", "failureRateThreshold"):
        value = _opt(auto, key)
        if value is not None and not (_is_number(value) and 0 <= value <= 1):
            errors.append(f"{base}.autoPause.{key} must be a number between 0 and 1 when present")
    return errors


def _shadow_errors(shadow: Any) -> list[str]:
    """``policy.autonomous.shadow`` (beyond the reference: shadow autonomy, docs/divergences.md)."""
    base = "policy.autonomous.shadow"
    errors = _object_error(shadow, f"{base} must be an object when present")
    for key in ("matchWindowSeconds", "agreementWindowSeconds", "minSampleSize"):
        errors += _int_min_error(_opt(shadow, key), 1, f"{base}.{key} must be an integer >= 1 when present")
    rate = _opt(shadow, "minAgreementRate")
    if rate is not None and not (_is_number(rate) and 0 <= rate <= 1):
        errors.append(f"{base}.minAgreementRate must be a number between 0 and 1 when present")
    return errors


def _normalize_shadow(shadow: Any) -> JsonObject:
    defaults = ShadowSettings()
    return {
        "matchWindowSeconds": _or_default(_opt(shadow, "matchWindowSeconds"), defaults.match_window_seconds),
        "agreementWindowSeconds": _or_default(
            _opt(shadow, "agreementWindowSeconds"), defaults.agreement_window_seconds
        ),
        "minAgreementRate": _or_default(_opt(shadow, "minAgreementRate"), defaults.min_agreement_rate),
        "minSampleSize": _or_default(_opt(shadow, "minSampleSize"), defaults.min_sample_size),
    }


def _suppression_errors(suppressions: Any, declared: set[str]) -> list[str]:
    if suppressions is None:
        return []
    if not isinstance(suppressions, Mapping):
        return ["policy.suppressions must be an object mapping loopId to category arrays"]
    errors: list[str] = []
    for key, value in suppressions.items():
        field = f"policy.suppressions.{key}"
        if key != "*" and key not in declared:
            errors.append(f"{field} key must reference a declared loopId or *")
        elif not isinstance(value, list):
            errors.append(f"{field} must be an array")
        elif not all(isinstance(item, str) for item in value):
            errors.append(f"{field} entries must be strings")
        elif any(item not in CATEGORIES for item in value):
            errors.append(f"{field} contains unknown categories")
    return errors


def _policy_errors(policy: Any, declared: set[str], now: dt.datetime) -> list[str]:
    errors = _object_error(policy, "policy must be an object when present")
    mode = _or_default(_opt(policy, "mode"), "advisory")
    if mode not in ("advisory", _SHADOW, _GUARDED):
        errors.append("policy.mode must be advisory, shadow or guarded_auto")
    noise = _opt(policy, "noiseControls")
    errors += _object_error(noise, "policy.noiseControls must be an object when present")
    errors += _int_min_error(
        _opt(noise, "dedupeWindowSeconds"),
        0,
        "policy.noiseControls.dedupeWindowSeconds must be an integer >= 0 when present",
    )
    autonomous = _opt(policy, "autonomous")
    errors += _object_error(autonomous, "policy.autonomous must be an object when present")
    allow = _opt(autonomous, "allow")
    errors += _object_error(allow, "policy.autonomous.allow must be an object when present")
    errors += _string_list_error(
        _opt(allow, "categories"), "policy.autonomous.allow.categories", CATEGORIES, "categories"
    )
    errors += _string_list_error(
        _opt(allow, "intents"), "policy.autonomous.allow.intents", INTENTS, "intents"
    )
    thresholds = _opt(autonomous, "thresholds")
    errors += _object_error(thresholds, "policy.autonomous.thresholds must be an object when present")
    errors += _enum_error(
        _opt(thresholds, "minSeverity"), "policy.autonomous.thresholds.minSeverity", SEVERITIES
    )
    errors += _enum_error(
        _opt(thresholds, "minConfidence"), "policy.autonomous.thresholds.minConfidence", CONFIDENCES
    )
    safety = _opt(autonomous, "safety")
    errors += _object_error(safety, "policy.autonomous.safety must be an object when present")
    for key in ("maxActionsPerRun", "maxActionsPerLoop", "cooldownSeconds"):
        errors += _int_min_error(
            _opt(safety, key), 0, f"policy.autonomous.safety.{key} must be an integer >= 0 when present"
        )
    kill = _get(safety, "killSwitch")
    if kill is not None and not isinstance(kill, bool):
        errors.append("policy.autonomous.safety.killSwitch must be boolean when present")
    errors += _governance_errors(_opt(autonomous, "governance"), mode, now)
    errors += _rollout_errors(_opt(autonomous, "rollout"), declared)
    errors += _shadow_errors(_opt(autonomous, "shadow"))
    errors += _suppression_errors(_opt(policy, "suppressions"), declared)
    errors += suppression_errors(policy)
    return errors


def compute_registry_errors(raw: Any, now: dt.datetime) -> list[str]:
    """Every validation message for a parsed registry, in the contract's emission order.

    ``now`` matters only for the guarded_auto "reviewBy must be in the future" rule.
    """
    if not isinstance(raw, Mapping):
        # Not in the reference (it crashes); a top-level non-object fails every rule below.
        raw = {}
    errors: list[str] = []
    if _opt(raw, "schemaVersion") != "v1":
        errors.append('schemaVersion must be "v1"')
    fleet_id = _opt(raw, "fleetId")
    if fleet_id is not None and not isinstance(fleet_id, str):
        errors.append("fleetId must be a string when present")
    loops = raw.get("loops")
    if not isinstance(loops, list):
        errors.append("loops must be an array")
    elif not loops:
        errors.append("loops must include at least one loop entry")
    else:
        ids = [loop_id for entry in loops if isinstance(loop_id := _opt(entry, "loopId"), str)]
        if len(set(ids)) != len(ids):
            errors.append("loopId values must be unique")
        for index, entry in enumerate(loops):
            errors += _loop_errors(index, entry)
    errors += _policy_errors(_opt(raw, "policy"), _declared_loop_ids(loops), now)
    return errors


def _or_default(value: Any, default: Any) -> Any:
    return value if _present(value) else default


def _bool_or_default(value: Any, default: bool) -> bool:
    """Booleans keep an explicit ``false`` (the reference defect turned it into the default)."""
    return value if isinstance(value, bool) else default


def _normalize_loop(entry: Mapping[str, Any]) -> JsonObject:
    sprite = _opt(entry, "sprite")
    service = _opt(entry, "service")
    sprite_base = _opt(sprite, "serviceBaseUrl")
    service_base = _opt(service, "baseUrl")
    sprite_out = {
        "id": _opt(sprite, "id"),
        "assignment": _opt(sprite, "assignment"),
        "serviceBaseUrl": sprite_base if sprite_base is not None else service_base,
    }
    service_out = {
        "baseUrl": service_base if service_base is not None else sprite_base,
        "tokenEnv": _opt(service, "tokenEnv"),
        "retryAttempts": _or_default(_opt(service, "retryAttempts"), 3),
        "retryBackoffSeconds": _or_default(_opt(service, "retryBackoffSeconds"), 1),
    }
    return {
        "loopId": entry.get("loopId"),
        "enabled": _bool_or_default(entry.get("enabled"), True),
        "transport": _or_default(_opt(entry, "transport"), "local"),
        "sprite": {key: value for key, value in sprite_out.items() if value is not None},
        "service": {key: value for key, value in service_out.items() if value is not None},
        "metadata": _or_default(_opt(entry, "metadata"), {}),
    }


def _normalize_governance(governance: Any) -> JsonObject:
    out: JsonObject = {
        key: _opt(governance, key) for key in ("actor", "approvalRef", "rationale", "changedAt", "reviewBy")
    }
    changed_at = parse_ts(out["changedAt"])
    review_by = parse_ts(out["reviewBy"])
    if changed_at is not None and review_by is not None:
        out["reviewWindowDays"] = math.floor((review_by - changed_at).total_seconds() / 86400)
    return {key: value for key, value in out.items() if value is not None}


def _normalize_policy(policy: Any) -> JsonObject:
    mode = _or_default(_opt(policy, "mode"), "advisory")
    autonomous = _opt(policy, "autonomous")
    shadow = _opt(autonomous, "shadow")
    allow = _opt(autonomous, "allow")
    thresholds = _opt(autonomous, "thresholds")
    safety = _opt(autonomous, "safety")
    rollout = _opt(autonomous, "rollout")
    auto_pause = _opt(rollout, "autoPause")
    return {
        "mode": mode,
        "suppressions": _or_default(_opt(policy, "suppressions"), {}),
        **{
            key: policy[key]
            for key in ("suppressionTerms", "suppressionLimits")
            if _present(_opt(policy, key))
        },
        "noiseControls": {
            "dedupeWindowSeconds": _or_default(
                _opt(_opt(policy, "noiseControls"), "dedupeWindowSeconds"), 300
            )
        },
        "autonomous": {
            "enabled": mode == _GUARDED,
            "allow": {
                "categories": _or_default(_opt(allow, "categories"), ["reconcile_failed", "health_critical"]),
                "intents": _or_default(_opt(allow, "intents"), ["cancel"]),
            },
            "thresholds": {
                "minSeverity": _or_default(_opt(thresholds, "minSeverity"), "critical"),
                "minConfidence": _or_default(_opt(thresholds, "minConfidence"), "high"),
            },
            "safety": {
                "maxActionsPerRun": _or_default(_opt(safety, "maxActionsPerRun"), 1),
                "maxActionsPerLoop": _or_default(_opt(safety, "maxActionsPerLoop"), 1),
                "cooldownSeconds": _or_default(_opt(safety, "cooldownSeconds"), 300),
                "killSwitch": _bool_or_default(_get(safety, "killSwitch"), False),
            },
            "governance": _normalize_governance(_opt(autonomous, "governance")),
            "rollout": {
                "canaryPercent": _or_default(_opt(rollout, "canaryPercent"), DEFAULT_CANARY_PERCENT),
                "scope": {"loopIds": _or_default(_opt(_opt(rollout, "scope"), "loopIds"), [])},
                "selector": {"salt": _or_default(_opt(_opt(rollout, "selector"), "salt"), DEFAULT_SALT)},
                "pause": {"manual": _bool_or_default(_get(_opt(rollout, "pause"), "manual"), False)},
                "autoPause": {
                    "enabled": _bool_or_default(_get(auto_pause, "enabled"), True),
                    "lookbackExecutions": _or_default(_opt(auto_pause, "lookbackExecutions"), 5),
                    "minSampleSize": _or_default(_opt(auto_pause, "minSampleSize"), 3),
                    "ambiguityRateThreshold": _or_default(_opt(auto_pause, "ambiguityRateThreshold"), 0.4),
                    "failureRateThreshold": _or_default(_opt(auto_pause, "failureRateThreshold"), 0.4),
                },
            },
            **({"shadow": _normalize_shadow(shadow)} if shadow is not None else {}),
        },
    }


def build_normalized_registry(raw: Mapping[str, Any], source_file: str) -> JsonObject:
    """The normalised registry document (call only after ``compute_registry_errors`` is empty)."""
    loops = [_normalize_loop(entry) for entry in raw.get("loops") or [] if isinstance(entry, Mapping)]
    return {
        "schemaVersion": "v1",
        "sourceFile": source_file,
        "fleetId": _or_default(_opt(raw, "fleetId"), "default"),
        "loops": loops,
        "policy": _normalize_policy(_opt(raw, "policy")),
        "loopCount": len(loops),
    }


def select_registry_loop(registry: JsonObject, loop_id: str) -> JsonObject:
    """The normalised document narrowed to one loop (``--loop`` inspection)."""
    loops = [loop for loop in registry["loops"] if loop.get("loopId") == loop_id]
    if not loops:
        raise LoopNotFoundError(f"loop not found in registry: {loop_id}")
    return {**registry, "loops": loops, "loopCount": len(loops)}
