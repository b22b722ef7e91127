"""Alerting of one Loop in Kubernetes: its sink catalog, its sink secrets, and the dispatch hook.

Local mode reads the catalog from a file and the sink secrets from the environment. The operator
has neither, so for each pass it gathers them from the API server:

- **Catalog**: ``spec.alerts.sinksConfigMapRef`` names a ConfigMap in the Loop's namespace; the
  catalog JSON is under ``key`` (default ``ops-manager-alert-sinks.v1.json``, the file name the
  CLI uses). Without a reference the operator's default catalog applies: that file in
  ``SUPERLOOP_CONFIG_DIR`` (the chart mounts its ConfigMap there), else the packaged one.
- **Secrets**: the catalog names each secret as an environment variable name (``urlEnv``,
  ``authTokenEnv``, ``webhookUrlEnv``, ``routingKeyEnv``). In Kubernetes that name is a *key* of
  the Secret ``spec.alerts.secretRef.name``, so one Secret per Loop holds every value its
  catalog needs, under the same names a local run exports. Only enabled sinks' keys are read.

Failure rules (alerting never changes the reconcile outcome):

- a missing Secret, a missing key, or a Secret the operator may not read leaves that name unset,
  so only the sinks that need it get ``missing_secret`` (a retryable outcome: the backlog is
  delivered once the Secret appears); the other sinks deliver;
- a missing ConfigMap or key, or a catalog that fails validation, makes the dispatch run fail
  (``alert_dispatch_failed`` row, dispatch cursor unchanged), so nothing is lost while it is fixed.

Secret values live only in memory for one pass: they are never logged, and any error text is
masked before it reaches the journal, the status or an Event.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from superloop_ops.core.alerts import sink_catalog
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.engine.alerts import alert_delivery
from superloop_ops.engine.loop import pass_hooks, reconcile_pass
from superloop_ops.engine.loop.threshold_files import shipped_config_path
from superloop_ops.errors import ContractError, OperatorError
from superloop_ops.models.loop import Loop

__all__ = [
    "ALERT_SINKS_KEY",
    "AlertObjectReader",
    "LoopAlertConfig",
    "LoopDispatchReport",
    "SinkDelivery",
    "build_operator_hooks",
    "compute_default_catalog_path",
    "compute_sink_deliveries",
    "fetch_loop_alert_config",
    "run_loop_alert_dispatch",
]

ALERT_SINKS_KEY = alert_delivery.ALERT_SINKS_CATALOG_NAME

_log = logging.getLogger(__name__)


class AlertObjectReader(Protocol):
    """The two reads this module needs from the API server (``k8s.edge.KubeEdge`` has both)."""

    def fetch_secret_value(self, namespace: str, name: str, key: str) -> str: ...

    def fetch_config_map_value(self, namespace: str, name: str, key: str) -> str: ...


@dataclasses.dataclass(frozen=True)
class LoopAlertConfig:
    """What one pass dispatches with: the catalog (or why there is none) and the secret values.

    ``source`` is where the catalog came from (a path, or ``configmap/<ns>/<name>#<key>``); it is
    echoed as ``sourceFile`` in route resolutions. ``missing_secrets`` lists the names (never the
    values) of enabled sinks' secrets that could not be read, for logs and tests.
    """

    enabled: bool
    source: str
    catalog: sink_catalog.SinkCatalog | None = None
    error: str | None = None
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    missing_secrets: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SinkDelivery:
    """One sink's outcome for one escalation in this run (the alert-deliveries metric)."""

    sink_type: str
    outcome: str  # "success" or the sink's reason code


@dataclasses.dataclass(frozen=True)
class LoopDispatchReport:
    """What the operator's dispatch hook returns through ``ReconcileResult.alert_result``."""

    state: JsonObject
    deliveries: tuple[SinkDelivery, ...] = ()


def compute_default_catalog_path(config_dir: Path | None) -> Path:
    """The mounted default catalog when it exists, else the packaged one."""
    if config_dir is not None:
        mounted = config_dir / ALERT_SINKS_KEY
        if mounted.is_file():
            return mounted
    return shipped_config_path(ALERT_SINKS_KEY)


def _load_catalog(
    loop: Loop, namespace: str, reader: AlertObjectReader, default_catalog: Path
) -> tuple[str, sink_catalog.SinkCatalog | None, str | None]:
    ref = loop.spec.alerts.sinks_config_map_ref
    if ref is None:
        source = str(default_catalog)
        try:
            return source, alert_delivery.fetch_sink_catalog(source), None
        except ContractError as exc:
            return source, None, str(exc)
    key = ref.key or ALERT_SINKS_KEY
    source = f"configmap/{namespace}/{ref.name}#{key}"
    try:
        text = reader.fetch_config_map_value(namespace, ref.name, key)
    except OperatorError as exc:
        return source, None, f"alert sink config not readable: {exc}"
    try:
        raw = json.loads(text)
    except ValueError:
        return source, None, f"invalid alert sink config JSON: {source}"
    try:
        return source, sink_catalog.build_sink_catalog(raw), None
    except ContractError as exc:
        return source, None, f"{exc}: {source}"


def fetch_loop_alert_config(
    loop: Loop, namespace: str, reader: AlertObjectReader, *, default_catalog: Path
) -> LoopAlertConfig:
    """Gather the catalog and the enabled sinks' secrets; never raises for missing objects."""
    settings = loop.spec.alerts
    if not settings.enabled:
        return LoopAlertConfig(enabled=False, source="")
    source, catalog, error = _load_catalog(loop, namespace, reader, default_catalog)
    if catalog is None:
        return LoopAlertConfig(enabled=True, source=source, error=error)
    names = sorted({name for sink in catalog.sinks if sink.enabled for name in sink.secret_env_names})
    secrets: dict[str, str] = {}
    missing: list[str] = []
    secret_ref = settings.secret_ref
    for name in names:
        if secret_ref is None:
            missing.append(name)
            continue
        try:
            value = reader.fetch_secret_value(namespace, secret_ref.name, name)
        except OperatorError as exc:  # the message names Secret and key, never a value
            _log.warning("alert sink secret unavailable for loop %s: %s", loop.spec.loop_id, exc)
            missing.append(name)
            continue
        if value:
            secrets[name] = value
        else:
            missing.append(name)
    return LoopAlertConfig(
        enabled=True, source=source, catalog=catalog, secrets=secrets, missing_secrets=tuple(missing)
    )


def compute_sink_deliveries(rows: list[Any]) -> tuple[SinkDelivery, ...]:
    """Sink outcomes of delivery rows (R6); results deferred without a request are not counted."""
    deliveries: list[SinkDelivery] = []
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("sinks"), list):
            continue
        for sink in row["sinks"]:
            if not isinstance(sink, Mapping):
                continue
            message = sink.get("message")
            if isinstance(message, str) and message.startswith("deferred:"):
                continue
            ok = sink.get("status") == "success"
            outcome = "success" if ok else str(sink.get("reasonCode") or "sink_dispatch_failed")
            deliveries.append(SinkDelivery(sink_type=str(sink.get("type") or "unknown"), outcome=outcome))
    return tuple(deliveries)


def _rows_after(path: Path, offset: int) -> list[Any]:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return []
    rows: list[Any] = []
    for line in data.split(b"\n"):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def run_loop_alert_dispatch(
    ctx: reconcile_pass.PassContext,
    config: LoopAlertConfig,
    *,
    settings: alert_delivery.DispatchSettings | None = None,
) -> LoopDispatchReport:
    """Step 14 with the Loop's catalog and secrets; a failure is raised with secrets masked.

    The reconcile engine turns a raised failure into the ``alert_dispatch_failed`` row.
    """
    if config.catalog is None:
        raise RuntimeError(f"error: {config.error or 'alert sink catalog unavailable'}")
    telemetry = ctx.paths.alert_dispatch_telemetry_file
    before = telemetry.stat().st_size if telemetry.is_file() else 0
    dispatcher = alert_delivery.AlertDispatcher(
        paths=alert_delivery.DispatchPaths(
            repo=ctx.paths.repo,
            escalations_file=ctx.paths.escalations_file,
            state_file=ctx.paths.alert_dispatch_state_file,
            telemetry_file=telemetry,
        ),
        loop_id=ctx.loop_id,
        trace_id=ctx.trace_id,
        catalog_path=config.source,
        secrets=config.secrets,
        catalog=config.catalog,
        settings=settings or alert_delivery.DispatchSettings(),
        now=lambda: ctx.now,
    )
    try:
        state = dispatcher.run()
    except Exception as exc:
        raise RuntimeError(alert_delivery.describe_dispatch_failure(exc, config.secrets.values())) from None
    return LoopDispatchReport(state=state, deliveries=compute_sink_deliveries(_rows_after(telemetry, before)))


def build_operator_hooks(
    config: LoopAlertConfig, *, pagerduty_url: str = ""
) -> reconcile_pass.ReconcileHooks:
    """Drift evaluation as in local mode, and dispatch with this Loop's catalog and secrets."""
    settings = alert_delivery.DispatchSettings(
        pagerduty_url=pagerduty_url or alert_delivery.DispatchSettings().pagerduty_url
    )

    def alert_dispatch(ctx: reconcile_pass.PassContext) -> object:
        return run_loop_alert_dispatch(ctx, config, settings=settings)

    return reconcile_pass.ReconcileHooks(
        profile_drift=pass_hooks.evaluate_profile_drift,
        alert_dispatch=alert_dispatch if config.enabled else None,
    )
