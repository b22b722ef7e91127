"""Operator settings, read once from the environment at startup.

A frozen dataclass instead of pydantic-settings (not a dependency): the operator reads its
environment exactly once in ``@kopf.on.startup`` and hands the result to every handler through
``memo``, so nothing below the entrypoint ever reads ``os.environ`` itself. Bad values fail the
startup with a clear message instead of surfacing later as odd behaviour.

Environment variables (all optional):

- ``SUPERLOOP_STATE_DIR``: journal root; one tree per namespace under it (default
  ``/var/lib/superloop/state``).
- ``SUPERLOOP_PVC_DIRS``: ``namespace/claim=/path,...``: (namespace, claim) -> directory. A
  claim belongs to its namespace: a Loop reaches only the claims of its own namespace. The chart
  maps its ``loopClaims`` (PVCs of the release namespace) this way.
- ``SUPERLOOP_PVC_MOUNT_ROOT``: a claim not in the mapping resolves to
  ``<root>/<namespace>/<claim>`` (default ``/var/lib/superloop/pvcs``).
- ``SUPERLOOP_METRICS_PORT`` (default 9090; 0 disables the endpoint), ``SUPERLOOP_METRICS_HOST``
  (default ``0.0.0.0``).
- ``SUPERLOOP_RECONCILE_INTERVAL_SECONDS``: interval when a Loop's spec names none (default 60).
- ``SUPERLOOP_NAMESPACES``: comma-separated namespaces (informational; kopf's ``--namespace``
  decides what is watched).
- ``SUPERLOOP_STATUS_REFRESH_SECONDS``: also rewrite an unchanged Loop status (its ageing
  values: lags, timestamps) this often; 0, the default, writes a Loop status only when its
  content changes (live lags are in the metrics). A refresh is a PATCH per idle Loop per period:
  at 10,000 Loops, 300 s was as many writes as all the real changes (docs/benchmarks.md).
- ``SUPERLOOP_FLEET_RECHECK_SECONDS``: a Fleet without a policy whose inputs did not change
  passes in full again after this long, and a FleetPolicy's validated rules are re-checked
  (default 300).
- ``SUPERLOOP_CONTROL_CONFIRM_TIMEOUT_SECONDS`` / ``SUPERLOOP_CONTROL_CONFIRM_INTERVAL_SECONDS``:
  confirmation polling for HandoffIntents (defaults 30 / 2, the control contract's defaults).
- ``SUPERLOOP_CONFIG_DIR``: directory of the mounted default catalogs (the chart's ConfigMap);
  a Loop without ``spec.alerts.sinksConfigMapRef`` uses ``ops-manager-alert-sinks.v1.json`` from
  here when the file exists, else the packaged default.
- ``SUPERLOOP_ALERT_PAGERDUTY_URL``: PagerDuty Events API v2 endpoint (default the public one;
  set it for an egress proxy, or a local receiver in tests).
- ``SUPERLOOP_PEERING``: kopf peering name; empty means standalone (the chart runs one replica).
- ``SUPERLOOP_SHARD``: ``i/n``: this replica reconciles only the Loops of shard i of n (and the
  HandoffIntents of those Loops); shard 0 also runs the fleet kinds. Empty: everything
  (``core.common.shards``).
- ``SUPERLOOP_LOOP_PASS_WORKERS``: threads that run the periodic Loop passes (one scheduler for
  every Loop, ``controllers.loop_scheduler``); due passes wait when all are busy (default 4).
- ``SUPERLOOP_LOOP_PASS_PROCESSES``: worker processes that run the file side of a Loop pass with
  a large backlog on other cores (``controllers.loop_pass_pool``); default 0: every pass runs in
  the calling thread, under the one GIL (docs/benchmarks.md "Catch-up on more than one core" has
  why 0 and not one per core). ``SUPERLOOP_LOOP_PASS_PROCESS_MIN_BYTES``: a pass goes to a worker
  only when it has at least this many new event bytes to ingest (default 262144; below it the
  round trip costs about what it saves). ``SUPERLOOP_LOOP_PASS_PROCESS_TIMEOUT_SECONDS``: a pass
  in a worker that takes longer is given up, its worker killed and the pass retried (default 300).
- ``SUPERLOOP_KOPF_WORKER_LIMIT``: kopf's per-object workers alive at once
  (``settings.queueing.worker_limit``; each holds its object's latest body). Default 0: no
  limit (kopf's default). A limit bounds the workers, not the events: kopf queues every event of
  an object waiting for a worker, body and all, without bound, which at 10,000 Loops grew shard
  0 (it sees every Loop) to 1.5 GB; idle workers already exit after
  ``SUPERLOOP_KOPF_IDLE_SECONDS``;
  ``SUPERLOOP_KOPF_IDLE_SECONDS``: how long an idle one lingers (default 2);
  ``SUPERLOOP_LIST_CHUNK_SIZE``: objects per page of kopf's initial listing (default 100).
- ``SUPERLOOP_TEST_PAUSE_AFTER_EXECUTING_SECONDS``: test hook only. After a HandoffIntent is
  recorded ``executing`` and before the side effect, sleep this long so an e2e test can SIGKILL
  the operator at a deterministic point. Never set in production.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from superloop_ops.core.common.shards import Shard, parse_shard
from superloop_ops.errors import InvalidSpecError
from superloop_ops.models import loop as model_loop
from superloop_ops.models.common import DEFAULT_RECONCILE_INTERVAL_SECONDS

__all__ = ["Settings", "build_pvc_dirs", "fetch_settings", "is_object_name"]

_DEFAULT_STATE_DIR = "/var/lib/superloop/state"
_DEFAULT_MOUNT_ROOT = "/var/lib/superloop/pvcs"
_OBJECT_NAME = re.compile(model_loop.OBJECT_NAME_PATTERN)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the operator needs to know about its environment."""

    state_dir: Path = Path(_DEFAULT_STATE_DIR)
    pvc_dirs: Mapping[tuple[str, str], Path] = dataclasses.field(default_factory=dict)
    pvc_mount_root: Path = Path(_DEFAULT_MOUNT_ROOT)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9090
    default_reconcile_interval_seconds: float = float(DEFAULT_RECONCILE_INTERVAL_SECONDS)
    namespaces: tuple[str, ...] = ()
    status_refresh_seconds: float = 0.0
    fleet_recheck_seconds: float = 300.0
    control_confirm_timeout_seconds: int = 30
    control_confirm_interval_seconds: int = 2
    peering_name: str = ""
    test_pause_after_executing_seconds: float = 0.0
    config_dir: Path | None = None
    alert_pagerduty_url: str = ""
    shard: Shard = dataclasses.field(default_factory=Shard)
    loop_pass_workers: int = 4
    loop_pass_processes: int = 0
    loop_pass_process_min_bytes: int = 256 * 1024
    loop_pass_process_timeout_seconds: float = 300.0
    kopf_worker_limit: int = 0
    kopf_idle_seconds: float = 2.0
    list_chunk_size: int = 100

    def resolve_pvc_dir(self, namespace: str, claim_name: str, sub_path: str | None = None) -> Path:
        """Directory holding the files of claim ``claim_name`` of ``namespace``: the mapping first,
        else ``<mount root>/<namespace>/<claim>``.

        Both names must be Kubernetes object names (no ``/``, no ``..``), and ``subPath`` must stay
        inside the claim (no absolute path, no ``..``): a Loop must not be able to point the
        operator at another namespace's claim or at arbitrary files.
        """
        for what, value in (("namespace", namespace), ("source.pvc.claimName", claim_name)):
            if not is_object_name(value):
                raise InvalidSpecError(f"{what} must be a Kubernetes object name (DNS-1123): {value!r}")
        base = self.pvc_dirs.get((namespace, claim_name))
        if base is None:
            base = self.pvc_mount_root / namespace / claim_name
        if not sub_path:
            return base
        rel = PurePosixPath(sub_path)
        if rel.is_absolute() or ".." in rel.parts:
            raise InvalidSpecError(f"source.pvc.subPath must be a relative path inside the claim: {sub_path}")
        return base.joinpath(*rel.parts)

    def namespace_state_dir(self, namespace: str) -> Path:
        """Journal tree of one namespace (the reference layout lives below it)."""
        return self.state_dir / namespace


def is_object_name(value: str) -> bool:
    """A DNS-1123 subdomain, the rule for namespace and PVC names (never ``/`` or ``..``)."""
    return len(value) <= 253 and _OBJECT_NAME.fullmatch(value) is not None


def build_pvc_dirs(raw: str) -> dict[tuple[str, str], Path]:
    """Parse ``namespace/claim=/path,...``; empty entries are ignored, malformed ones fail."""
    mapping: dict[tuple[str, str], Path] = {}
    for item in raw.split(","):
        entry = item.strip()
        if not entry:
            continue
        key, sep, path = entry.partition("=")
        namespace, slash, claim = key.strip().partition("/")
        if not (sep and slash and path.strip() and is_object_name(namespace) and is_object_name(claim)):
            raise InvalidSpecError(f"SUPERLOOP_PVC_DIRS entry must be namespace/claim=/path: {entry}")
        mapping[(namespace, claim)] = Path(path.strip())
    return mapping


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidSpecError(f"{name} must be a number: {raw}") from None
    if value < minimum:
        raise InvalidSpecError(f"{name} must be >= {minimum:g}: {raw}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise InvalidSpecError(f"{name} must be a non-negative integer: {raw}")
    return int(raw)


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    value = _integer(env, name, default)
    if value < 1:
        raise InvalidSpecError(f"{name} must be at least 1: {value}")
    return value


def fetch_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default: the process environment), failing closed."""
    source = os.environ if env is None else env
    port = _integer(source, "SUPERLOOP_METRICS_PORT", 9090)
    if port > 65535:
        raise InvalidSpecError(f"SUPERLOOP_METRICS_PORT out of range: {port}")
    namespaces = tuple(ns.strip() for ns in source.get("SUPERLOOP_NAMESPACES", "").split(",") if ns.strip())
    return Settings(
        state_dir=Path(source.get("SUPERLOOP_STATE_DIR", "").strip() or _DEFAULT_STATE_DIR),
        pvc_dirs=build_pvc_dirs(source.get("SUPERLOOP_PVC_DIRS", "")),
        pvc_mount_root=Path(source.get("SUPERLOOP_PVC_MOUNT_ROOT", "").strip() or _DEFAULT_MOUNT_ROOT),
        metrics_host=source.get("SUPERLOOP_METRICS_HOST", "").strip() or "0.0.0.0",
        metrics_port=port,
        default_reconcile_interval_seconds=_number(
            source,
            "SUPERLOOP_RECONCILE_INTERVAL_SECONDS",
            float(DEFAULT_RECONCILE_INTERVAL_SECONDS),
            minimum=1.0,
        ),
        namespaces=namespaces,
        status_refresh_seconds=_number(
            source, "SUPERLOOP_STATUS_REFRESH_SECONDS", Settings.status_refresh_seconds
        ),
        fleet_recheck_seconds=_number(
            source, "SUPERLOOP_FLEET_RECHECK_SECONDS", Settings.fleet_recheck_seconds
        ),
        control_confirm_timeout_seconds=_integer(source, "SUPERLOOP_CONTROL_CONFIRM_TIMEOUT_SECONDS", 30),
        control_confirm_interval_seconds=_integer(source, "SUPERLOOP_CONTROL_CONFIRM_INTERVAL_SECONDS", 2),
        peering_name=source.get("SUPERLOOP_PEERING", "").strip(),
        test_pause_after_executing_seconds=_number(
            source, "SUPERLOOP_TEST_PAUSE_AFTER_EXECUTING_SECONDS", 0.0
        ),
        config_dir=_optional_path(source, "SUPERLOOP_CONFIG_DIR"),
        alert_pagerduty_url=_url(source, "SUPERLOOP_ALERT_PAGERDUTY_URL"),
        shard=parse_shard(source.get("SUPERLOOP_SHARD", "")),
        loop_pass_workers=_positive(source, "SUPERLOOP_LOOP_PASS_WORKERS", Settings.loop_pass_workers),
        loop_pass_processes=_integer(source, "SUPERLOOP_LOOP_PASS_PROCESSES", Settings.loop_pass_processes),
        loop_pass_process_min_bytes=_integer(
            source, "SUPERLOOP_LOOP_PASS_PROCESS_MIN_BYTES", Settings.loop_pass_process_min_bytes
        ),
        loop_pass_process_timeout_seconds=_number(
            source,
            "SUPERLOOP_LOOP_PASS_PROCESS_TIMEOUT_SECONDS",
            Settings.loop_pass_process_timeout_seconds,
            minimum=1.0,
        ),
        kopf_worker_limit=_integer(source, "SUPERLOOP_KOPF_WORKER_LIMIT", Settings.kopf_worker_limit),
        kopf_idle_seconds=_number(
            source, "SUPERLOOP_KOPF_IDLE_SECONDS", Settings.kopf_idle_seconds, minimum=0.1
        ),
        list_chunk_size=_positive(source, "SUPERLOOP_LIST_CHUNK_SIZE", Settings.list_chunk_size),
    )


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw) if raw else None


def _url(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip()
    if raw and not raw.startswith(("http://", "https://")):
        raise InvalidSpecError(f"{name} must be an http(s) URL: {raw}")
    return raw
