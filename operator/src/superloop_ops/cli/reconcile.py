"""``superloop-ops reconcile``: one reconcile pass of one loop (loop-core §5.1).

Flags, defaults, env fallbacks and the order in which validation errors win follow the
contract: plain flag checks first, then the ops directory is created, then env fallbacks, then
the threshold profile is resolved (a failure there writes nothing else), then the drift and
threshold values are checked again. Exit 0 after a successful ingest (stdout: the state),
1 after a failed ingest (stdout: the health document) or on any input error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.loop import threshold_profiles
from superloop_ops.engine.loop import pass_hooks, reconcile_pass, threshold_files
from superloop_ops.errors import ContractError
from superloop_ops.journal import files

__all__ = ["HOOKS_FACTORY", "add_arguments", "build_options", "print_document", "run"]

CONFIDENCES = ("low", "medium", "high")

# Seam for tests and embedders: turns the parsed arguments into hooks. None = the standard
# profile-drift and alert-dispatch wiring (``engine.loop.pass_hooks``).
HOOKS_FACTORY: Callable[[argparse.Namespace], reconcile_pass.ReconcileHooks] | None = None

_THRESHOLD_FLAGS: tuple[tuple[str, str], ...] = tuple(
    (key, flag) for key, flag in threshold_profiles.THRESHOLD_FIELDS
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--repo", default="", help="repository path (required)")
    add("--loop", default="", help="loop id (required)")
    add("--transport", default="local", help="local | sprite_service (default local)")
    add("--service-base-url", default="", help="sprite service base URL (sprite_service)")
    add("--service-token", default="", help="sprite service token (env OPS_MANAGER_SERVICE_TOKEN)")
    add("--trace-id", default="", help="trace id (env OPS_MANAGER_TRACE_ID; default: random UUID)")
    add("--retry-attempts", default="3", help="service attempts per request, >= 1 (default 3)")
    add("--retry-backoff-seconds", default="1", help="linear backoff step in seconds (default 1)")
    add("--cursor-file", default="", help="cursor file (default <ops>/cursor.json)")
    add("--state-file", default="", help="state file (default <ops>/state.json)")
    add("--max-events", default="0", help="events per pass, 0 = all (default 0)")
    add("--from-start", action="store_true", help="ignore the cursor and replay from line 0")
    add("--threshold-profile", default="", help="profile name (env OPS_MANAGER_THRESHOLD_PROFILE)")
    add("--thresholds-file", default="", help="profile catalog (env OPS_MANAGER_THRESHOLD_PROFILES_FILE)")
    add("--drift-min-confidence", default="", help="low | medium | high (default medium)")
    add("--drift-required-streak", default="", help="mismatches before drift is active (default 3)")
    add("--drift-summary-window", default="", help="telemetry rows summarised (default 200)")
    add("--drift-state-file", default="", help="default <ops>/profile-drift.json")
    add("--drift-history-file", default="", help="default <ops>/telemetry/profile-drift.jsonl")
    add("--sequence-state-file", default="", help="default <ops>/sequence-state.json")
    add("--sequence-telemetry-file", default="", help="default <ops>/telemetry/sequence.jsonl")
    add("--alerts-enabled", default="", help="true | false (env OPS_MANAGER_ALERTS_ENABLED; default true)")
    add("--alert-config-file", default="", help="alert sink catalog (env OPS_MANAGER_ALERT_SINKS_FILE)")
    add("--alert-dispatch-state-file", default="", help="default <ops>/alert-dispatch-state.json")
    add("--alert-dispatch-telemetry-file", default="", help="default <ops>/telemetry/alerts.jsonl")
    add("--heartbeat-state-file", default="", help="default <ops>/heartbeat.json")
    add("--heartbeat-telemetry-file", default="", help="default <ops>/telemetry/heartbeat.jsonl")
    for _, flag in _THRESHOLD_FLAGS:
        add(f"--{flag}", default=None, help="threshold override (integer >= 0)")
    add("--pretty", action="store_true", help="pretty-print stdout (files stay compact)")


def _int_at_least(value: str, minimum: int, message: str) -> int:
    number = threshold_profiles.coerce_non_negative_int(value)
    if number is None or number < minimum:
        raise ContractError(message)
    return number


def _path(value: str) -> Path | None:
    return Path(value).absolute() if value else None


def build_options(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> reconcile_pass.ReconcileOptions:
    """Validate flags and env in the contract's order and build the pass options."""
    environ = os.environ if env is None else env
    # 1. Plain flag checks, before any env fallback.
    if not args.repo:
        raise ContractError("--repo is required")
    if not args.loop:
        raise ContractError("--loop is required")
    max_events = _int_at_least(args.max_events, 0, "--max-events must be a non-negative integer")
    retry_attempts = _int_at_least(args.retry_attempts, 1, "--retry-attempts must be an integer >= 1")
    backoff = _int_at_least(
        args.retry_backoff_seconds, 0, "--retry-backoff-seconds must be a non-negative integer"
    )
    streak_text = args.drift_required_streak or "3"
    window_text = args.drift_summary_window or "200"
    _int_at_least(streak_text, 1, "--drift-required-streak must be an integer >= 1")
    _int_at_least(window_text, 1, "--drift-summary-window must be an integer >= 1")
    if args.alerts_enabled and args.alerts_enabled not in ("true", "false"):
        raise ContractError("--alerts-enabled must be true or false")
    if args.transport not in reconcile_pass.TRANSPORTS:
        raise ContractError("--transport must be local or sprite_service")
    # 2. The repository must exist; the ops directory is created before anything else.
    repo = Path(args.repo).absolute()
    if not repo.is_dir():
        raise ContractError(f"repository not found: {args.repo}")
    files.ensure_dir(reconcile_pass.ops_dir_for(repo, args.loop))
    # 3. Env fallbacks (empty counts as unset).
    token = args.service_token or environ.get("OPS_MANAGER_SERVICE_TOKEN", "")
    trace_id = args.trace_id or environ.get("OPS_MANAGER_TRACE_ID", "") or reconcile_pass.generate_trace_id()
    profile_name = args.threshold_profile or environ.get(threshold_files.PROFILE_ENV, "")
    min_confidence = (
        args.drift_min_confidence or environ.get("OPS_MANAGER_DRIFT_MIN_CONFIDENCE", "") or "medium"
    )
    if not args.drift_required_streak:
        streak_text = environ.get("OPS_MANAGER_DRIFT_REQUIRED_STREAK", "") or streak_text
    if not args.drift_summary_window:
        window_text = environ.get("OPS_MANAGER_DRIFT_SUMMARY_WINDOW", "") or window_text
    alerts_text = args.alerts_enabled or environ.get("OPS_MANAGER_ALERTS_ENABLED", "") or "true"
    if not args.alerts_enabled and alerts_text not in ("true", "false"):
        # Divergence: the reference silently disabled alerts on any other env value.
        raise ContractError("OPS_MANAGER_ALERTS_ENABLED must be true or false")
    alert_config = args.alert_config_file or environ.get("OPS_MANAGER_ALERT_SINKS_FILE", "")
    # 4. Threshold profile (fails before any artifact is written).
    catalog_path = threshold_files.compute_catalog_path(args.thresholds_file or None, environ)
    profile = threshold_files.fetch_profile(catalog_path, profile_name or None)
    # 5. Re-check the drift values (they may come from env), then the six thresholds.
    if min_confidence not in CONFIDENCES:
        raise ContractError("--drift-min-confidence must be one of: low, medium, high")
    streak = _int_at_least(streak_text, 1, "--drift-required-streak must be an integer >= 1")
    window = _int_at_least(window_text, 1, "--drift-summary-window must be an integer >= 1")
    explicit = {key: getattr(args, flag.replace("-", "_")) for key, flag in _THRESHOLD_FLAGS}
    thresholds = threshold_profiles.compute_thresholds(profile, explicit)
    transport: reconcile_pass.Transport = "sprite_service" if args.transport == "sprite_service" else "local"
    hooks = HOOKS_FACTORY(args) if HOOKS_FACTORY is not None else pass_hooks.build_standard_hooks()
    return reconcile_pass.ReconcileOptions(
        repo=repo,
        loop_id=args.loop,
        thresholds=thresholds,
        transport=transport,
        service=reconcile_pass.ServiceSettings(
            base_url=args.service_base_url or None,
            token=token or None,
            retry_attempts=retry_attempts,
            retry_backoff_seconds=backoff,
        ),
        from_start=bool(args.from_start),
        max_events=max_events,
        trace_id=trace_id,
        cursor_file=_path(args.cursor_file),
        state_file=_path(args.state_file),
        heartbeat_state_file=_path(args.heartbeat_state_file),
        heartbeat_telemetry_file=_path(args.heartbeat_telemetry_file),
        sequence_state_file=_path(args.sequence_state_file),
        sequence_telemetry_file=_path(args.sequence_telemetry_file),
        thresholds_file=Path(catalog_path),
        drift=reconcile_pass.DriftSettings(
            min_confidence=min_confidence,
            required_streak=streak,
            summary_window=window,
            state_file=_path(args.drift_state_file),
            history_file=_path(args.drift_history_file),
        ),
        alerts=reconcile_pass.AlertSettings(
            enabled=alerts_text == "true",
            config_file=_path(alert_config),
            state_file=_path(args.alert_dispatch_state_file),
            telemetry_file=_path(args.alert_dispatch_telemetry_file),
        ),
        hooks=hooks,
    )


def print_document(document: JsonObject, *, pretty: bool) -> None:
    sys.stdout.write(files.encode_json(document, pretty=pretty).decode("utf-8") + "\n")


def run(args: argparse.Namespace) -> int:
    options = build_options(args)
    result = reconcile_pass.run_reconcile(options)
    print_document(result.output, pretty=bool(args.pretty))
    return result.exit_code
