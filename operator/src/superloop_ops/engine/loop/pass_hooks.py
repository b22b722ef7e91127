"""Standard wiring of reconcile steps 13 and 14 to the tuning and alerting components.

``engine.loop.reconcile_pass`` only knows the hook signatures; this module binds them to the
telemetry summary, the drift evaluator (``engine.loop.tuning_pass``) and the alert dispatcher
(``engine.alerts.alert_delivery``), so that the CLI and the operator run the same pass. Every
path comes from the pass's ``ReconcilePaths`` (so ``--drift-state-file`` and the alert file flags
are honoured). Secrets for alert sinks come from the mapping given here (the process environment
by default); they are never stored in the options and are masked in any failure message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from superloop_ops.engine.alerts import alert_delivery
from superloop_ops.engine.loop import reconcile_pass, threshold_files, tuning_pass
from superloop_ops.errors import ContractError

__all__ = ["build_standard_hooks", "evaluate_profile_drift", "run_alert_dispatch"]


def evaluate_profile_drift(ctx: reconcile_pass.PassContext) -> reconcile_pass.DriftOutcome | None:
    """Step 13: summary over the drift window, then one drift evaluation (writes its own files).

    A summary failure means "no summary"; a recommendation the catalog lacks counts as no
    recommendation and a corrupt drift state restarts the streak (see the tuning divergences).
    """
    paths, settings = ctx.paths, ctx.options.drift
    if not paths.reconcile_telemetry_file.is_file():
        return None
    catalog = str(ctx.options.thresholds_file or threshold_files.default_catalog_path())
    evaluation = tuning_pass.ensure_window_drift_evaluation(
        paths.repo,
        ctx.loop_id,
        applied_profile=ctx.applied_profile or "",
        settings=tuning_pass.DriftSettings(
            min_confidence=settings.min_confidence,
            required_streak=settings.required_streak,
            summary_window=settings.summary_window,
        ),
        catalog_profiles=tuning_pass.fetch_catalog_profile_names(catalog),
        state_file=paths.drift_state_file,
        history_file=paths.drift_history_file,
        now=ctx.now,
        reconcile_file=paths.reconcile_telemetry_file,
        control_file=paths.control_telemetry_file,
        journal=ctx.journal,
    )
    return reconcile_pass.DriftOutcome(drift=evaluation.document, summary=evaluation.summary)


def build_standard_hooks(secrets: Mapping[str, str] | None = None) -> reconcile_pass.ReconcileHooks:
    """Hooks that evaluate profile drift and dispatch alerts exactly as the contract describes."""
    environ: Mapping[str, str] = os.environ if secrets is None else secrets

    def alert_dispatch(ctx: reconcile_pass.PassContext) -> object:
        return run_alert_dispatch(ctx, environ)

    return reconcile_pass.ReconcileHooks(profile_drift=evaluate_profile_drift, alert_dispatch=alert_dispatch)


def run_alert_dispatch(ctx: reconcile_pass.PassContext, secrets: Mapping[str, str]) -> object:
    """Step 14: dispatch the new escalation rows; any failure is raised with secrets masked.

    The reconcile engine turns a raised failure into the ``alert_dispatch_failed`` row.
    """
    config = ctx.options.alerts.config_file
    catalog_path = str(config) if config else alert_delivery.resolve_alert_sinks_path(None, {})
    dispatcher = alert_delivery.AlertDispatcher(
        paths=alert_delivery.DispatchPaths(
            repo=ctx.paths.repo,
            escalations_file=ctx.paths.escalations_file,
            state_file=ctx.paths.alert_dispatch_state_file,
            telemetry_file=ctx.paths.alert_dispatch_telemetry_file,
        ),
        loop_id=ctx.loop_id,
        trace_id=ctx.trace_id,
        catalog_path=catalog_path,
        secrets=secrets,
        now=lambda: ctx.now,
    )
    try:
        return dispatcher.run()
    except Exception as exc:
        values = (secrets.get(name, "") for name in _secret_names(catalog_path))
        raise RuntimeError(alert_delivery.describe_dispatch_failure(exc, values)) from exc


def _secret_names(catalog_path: str) -> set[str]:
    """The env variables the sink catalog names as secrets (none when it cannot be read)."""
    try:
        catalog = alert_delivery.fetch_sink_catalog(catalog_path)
    except (ContractError, OSError):
        return set()
    return {name for sink in catalog.sinks for name in sink.secret_env_names}
