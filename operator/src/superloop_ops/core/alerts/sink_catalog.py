"""Alert sink catalog: fail-closed validation, secret-ref status, and category/severity routing.

Validation runs in the contract's stages (shape, sinks, routing, secrets) and the first failing
stage's message is the error. Secret values never enter this module's outputs: only env *names*
and whether each is present. Two deliberate fixes over the reference: a route with
``enabled: false`` never matches, and the dispatcher routes with ``check_secrets=False`` so a
sink whose secret is missing fails alone (``missing_secret``) instead of failing every row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject, prune_nulls
from superloop_ops.errors import ContractError

__all__ = [
    "SEVERITY_RANKS",
    "SINK_TYPES",
    "Sink",
    "SinkCatalog",
    "build_catalog_summary",
    "build_route_resolution",
    "build_sink_catalog",
    "build_sink_listing",
    "compute_env_status",
    "compute_missing_secrets",
    "ensure_secrets_present",
    "is_secret_set",
    "validate_severity_args",
]

SEVERITY_RANKS: dict[str, int] = {"info": 1, "warning": 2, "critical": 3}
SINK_TYPES = ("webhook", "slack", "pagerduty_events", "alertmanager")
#: An alertmanager sink's alerts resolve on their own this long after they were sent (``endsAt``).
DEFAULT_RESOLVE_AFTER_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 5
_ENV_REF = re.compile(r"\A[A-Z_][A-Z0-9_]*\Z")

_SHAPE_ERROR = "alert sink config has invalid top-level shape"
_SINKS_ERROR = "alert sink config sink definitions are invalid"
_ROUTING_ERROR = "alert sink config routing is invalid"


@dataclass(frozen=True)
class Sink:
    """One validated sink; ``raw`` keeps the catalog entry for the type-specific keys."""

    id: str
    type: str
    enabled: bool
    timeout_seconds: int | float
    raw: Mapping[str, Any]

    @property
    def secret_refs(self) -> JsonObject:
        if self.type == "webhook":
            return {"urlEnv": self.raw.get("urlEnv"), "authTokenEnv": self.raw.get("authTokenEnv") or None}
        if self.type == "slack":
            return {"webhookUrlEnv": self.raw.get("webhookUrlEnv")}
        if self.type == "alertmanager":
            return {"urlEnv": self.raw.get("urlEnv"), "authTokenEnv": self.raw.get("authTokenEnv") or None}
        return {"routingKeyEnv": self.raw.get("routingKeyEnv")}

    @property
    def secret_env_names(self) -> list[str]:
        return [name for name in self.secret_refs.values() if isinstance(name, str) and name]

    @property
    def config(self) -> JsonObject:
        raw = self.raw
        if self.type == "webhook":
            return {"headers": raw.get("headers") or {}}
        if self.type == "slack":
            return {
                "channel": raw.get("channel") or None,
                "username": raw.get("username") or None,
                "iconEmoji": raw.get("iconEmoji") or None,
            }
        if self.type == "alertmanager":
            return {
                "labels": raw.get("labels") or {},
                "resolveAfterSeconds": raw.get("resolveAfterSeconds") or DEFAULT_RESOLVE_AFTER_SECONDS,
                "generatorUrl": raw.get("generatorUrl") or None,
            }
        return {
            "source": raw.get("source") or "superloop-ops-manager",
            "component": raw.get("component") or None,
            "group": raw.get("group") or None,
            "class": raw.get("class") or None,
        }

    def describe(self) -> JsonObject:
        """The resolver's ``selectedSinks`` entry."""
        return {
            "id": self.id,
            "type": self.type,
            "enabled": self.enabled,
            "timeoutSeconds": self.timeout_seconds,
            "secretRefs": self.secret_refs,
            "config": self.config,
        }


@dataclass(frozen=True)
class SinkCatalog:
    """A catalog that passed the four structural stages (secrets are checked separately)."""

    raw: Mapping[str, Any]
    default_min_severity: str
    sinks: tuple[Sink, ...]

    def sink(self, sink_id: str) -> Sink | None:
        return next((sink for sink in self.sinks if sink.id == sink_id), None)

    @property
    def routing(self) -> Mapping[str, Any]:
        routing = self.raw.get("routing")
        return routing if isinstance(routing, dict) else {}

    @property
    def routes(self) -> list[Any]:
        routes = self.routing.get("routes")
        return routes if isinstance(routes, list) else []


def _present(value: object) -> bool:
    """The contract's coalesce rule: missing, null and false count as absent."""
    return value is not None and value is not False


def _is_severity(value: object) -> bool:
    return isinstance(value, str) and value in SEVERITY_RANKS


def _is_env_ref(value: object) -> bool:
    return isinstance(value, str) and _ENV_REF.match(value) is not None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_shape(raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise ContractError(_SHAPE_ERROR)
    sinks = raw.get("sinks")
    routing = raw.get("routing")
    ok = (
        raw.get("schemaVersion") == "v1"
        and _is_severity(raw.get("defaultMinSeverity"))
        and isinstance(sinks, dict)
        and len(sinks) > 0
        and isinstance(routing, dict)
        and isinstance(routing.get("defaultSinks"), list)
        and isinstance(routing.get("categorySeverity"), dict)
        and (routing.get("routes") is None or isinstance(routing.get("routes"), list))
    )
    if not ok:
        raise ContractError(_SHAPE_ERROR)
    return raw


def _check_sink(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    if not isinstance(entry.get("enabled"), bool) or entry.get("type") not in SINK_TYPES:
        return False
    timeout = entry.get("timeoutSeconds")
    if _present(timeout) and not (_is_number(timeout) and 1 <= float(timeout) <= 120):  # type: ignore[arg-type]
        return False
    kind = entry["type"]
    if kind == "webhook":
        token = entry.get("authTokenEnv")
        headers = entry.get("headers")
        return (
            _is_env_ref(entry.get("urlEnv"))
            and (not _present(token) or _is_env_ref(token))
            and (
                not _present(headers)
                or (isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values()))
            )
        )
    if kind == "slack":
        return _is_env_ref(entry.get("webhookUrlEnv"))
    if kind == "alertmanager":
        return _check_alertmanager(entry)
    return _is_env_ref(entry.get("routingKeyEnv"))


_LABEL_NAME = re.compile(r"\A[a-zA-Z_][a-zA-Z0-9_]*\Z")


def _check_alertmanager(entry: Mapping[str, Any]) -> bool:
    """URL env (the Alertmanager base URL), optional token env, string labels, a resolve delay."""
    token, labels, resolve = entry.get("authTokenEnv"), entry.get("labels"), entry.get("resolveAfterSeconds")
    return (
        _is_env_ref(entry.get("urlEnv"))
        and (not _present(token) or _is_env_ref(token))
        and (
            not _present(labels)
            or (
                isinstance(labels, dict)
                and all(_LABEL_NAME.match(str(k)) and isinstance(v, str) for k, v in labels.items())
            )
        )
        and (not _present(resolve) or (_is_number(resolve) and 60 <= float(str(resolve)) <= 604_800))
    )


def _check_routing(raw: Mapping[str, Any]) -> None:
    sinks = raw["sinks"]
    routing = raw["routing"]

    def known(sink_id: object) -> bool:
        return isinstance(sink_id, str) and sink_id in sinks

    ok = all(known(sink_id) for sink_id in routing["defaultSinks"])
    for route in routing.get("routes") or []:
        if not isinstance(route, dict):
            ok = False
            break
        category = route.get("category")
        enabled = route.get("enabled")
        min_severity = route.get("minSeverity")
        route_sinks = route.get("sinks")
        ok = ok and (
            isinstance(category, str)
            and len(category) > 0
            and (not _present(enabled) or isinstance(enabled, bool))
            and (not _present(min_severity) or _is_severity(min_severity))
            and (
                not _present(route_sinks) or (isinstance(route_sinks, list) and all(map(known, route_sinks)))
            )
        )
    ok = ok and all(_is_severity(value) for value in routing["categorySeverity"].values())
    if not ok:
        raise ContractError(_ROUTING_ERROR)


def build_sink_catalog(raw: object) -> SinkCatalog:
    """Validate a parsed catalog (stages 3-5); raise ``ContractError`` with the stage's message."""
    document = _check_shape(raw)
    sinks_raw: dict[str, Any] = document["sinks"]
    if not all(_check_sink(entry) for entry in sinks_raw.values()):
        raise ContractError(_SINKS_ERROR)
    _check_routing(document)
    sinks = tuple(
        Sink(
            id=sink_id,
            type=entry["type"],
            enabled=entry["enabled"],
            timeout_seconds=entry["timeoutSeconds"] if _present(entry.get("timeoutSeconds")) else 5,
            raw=entry,
        )
        for sink_id, entry in sinks_raw.items()
    )
    return SinkCatalog(raw=document, default_min_severity=document["defaultMinSeverity"], sinks=sinks)


def is_secret_set(env: Mapping[str, str], name: str) -> bool:
    """ "Set" means present and non-empty."""
    return bool(env.get(name))


def compute_env_status(catalog: SinkCatalog, env: Mapping[str, str]) -> JsonObject:
    """Presence of every secret ref of every sink (enabled or not), sorted by name."""
    names = sorted({name for sink in catalog.sinks for name in sink.secret_env_names})
    return {name: {"present": is_secret_set(env, name)} for name in names}


def compute_missing_secrets(catalog: SinkCatalog, env: Mapping[str, str]) -> list[str]:
    """Unset secret refs of enabled sinks (routed or not), sorted and de-duplicated."""
    names = {name for sink in catalog.sinks if sink.enabled for name in sink.secret_env_names}
    return sorted(name for name in names if not is_secret_set(env, name))


def ensure_secrets_present(catalog: SinkCatalog, env: Mapping[str, str]) -> None:
    """Stage 6 of the resolver: fail closed while an enabled sink lacks a secret."""
    missing = compute_missing_secrets(catalog, env)
    if missing:
        raise ContractError(f"enabled sink secret env var(s) are unset: {' '.join(missing)}")


def validate_severity_args(*, category: str | None, severity: str | None, list_sinks: bool) -> None:
    """Argument checks that run before the catalog is read."""
    if list_sinks and category:
        raise ContractError("--list-sinks cannot be combined with --category")
    if severity and not category:
        raise ContractError("--severity requires --category")
    if severity and severity not in SEVERITY_RANKS:
        raise ContractError("--severity must be one of: info, warning, critical")


def build_sink_listing(catalog: SinkCatalog) -> list[str]:
    """``<id>\\t<type>\\t<enabled>`` per sink, catalog order."""
    return [f"{sink.id}\t{sink.type}\t{'true' if sink.enabled else 'false'}" for sink in catalog.sinks]


def build_catalog_summary(
    catalog: SinkCatalog, *, source_file: str, env: Mapping[str, str], env_check: bool
) -> JsonObject:
    """The resolver output without ``--category`` (not null-stripped)."""
    sinks = [
        {
            "id": sink.id,
            "enabled": sink.enabled,
            "type": sink.type,
            "timeoutSeconds": sink.timeout_seconds,
            "secretRefs": sink.secret_refs,
        }
        for sink in catalog.sinks
    ]
    return {
        "schemaVersion": "v1",
        "sourceFile": source_file,
        "defaultMinSeverity": catalog.default_min_severity,
        "sinks": sinks,
        "enabledSinkCount": sum(1 for sink in catalog.sinks if sink.enabled),
        "routing": dict(catalog.routing),
        "envStatus": compute_env_status(catalog, env),
        "validation": {"envCheckEnabled": env_check},
    }


def _route_enabled(route: Mapping[str, Any]) -> bool:
    # Fixed reference defect: an explicit ``enabled: false`` route never matches.
    return route.get("enabled") is not False


def build_route_resolution(
    catalog: SinkCatalog,
    category: str,
    severity: str | None,
    *,
    source_file: str,
    env: Mapping[str, str],
    env_check: bool,
) -> JsonObject:
    """Resolve one escalation category (and optional severity) to its dispatchable sinks."""
    if severity and severity not in SEVERITY_RANKS:
        raise ContractError("--severity must be one of: info, warning, critical")
    route = next(
        (
            candidate
            for candidate in catalog.routes
            if isinstance(candidate, dict)
            and candidate.get("category") == category
            and _route_enabled(candidate)
        ),
        None,
    )
    route_sinks = route.get("sinks") if route is not None else None
    if isinstance(route_sinks, list) and route_sinks:
        sink_ids: list[Any] = route_sinks
    else:
        sink_ids = list(catalog.routing.get("defaultSinks") or [])
    min_severity = (route or {}).get("minSeverity") or catalog.default_min_severity or "warning"
    mapped = catalog.routing["categorySeverity"].get(category) or None
    event_severity = severity or mapped or min_severity
    if event_severity not in SEVERITY_RANKS:
        raise ContractError(f"resolved event severity is invalid for category '{category}': {event_severity}")
    selected = [
        sink for sink in (catalog.sink(sink_id) for sink_id in sink_ids if isinstance(sink_id, str)) if sink
    ]
    should_dispatch = SEVERITY_RANKS[event_severity] >= SEVERITY_RANKS[min_severity]
    dispatchable = [sink.describe() for sink in selected if sink.enabled] if should_dispatch else []
    return prune_nulls(
        {
            "schemaVersion": "v1",
            "sourceFile": source_file,
            "category": category,
            "eventSeverity": event_severity,
            "categoryMappedSeverity": mapped,
            "minSeverity": min_severity,
            "shouldDispatch": should_dispatch,
            "route": route,
            "selectedSinks": [sink.describe() for sink in selected],
            "dispatchableSinks": dispatchable,
            "envStatus": compute_env_status(catalog, env),
            "validation": {"envCheckEnabled": env_check},
        }
    )
