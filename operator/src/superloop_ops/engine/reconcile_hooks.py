"""Standard wiring of reconcile steps 13 and 14 to the tuning and alerting components.

``engine.reconcile`` only knows the hook signatures; this module binds them to
``engine.tuning.run_profile_drift_step`` and ``engine.alerts.run_alert_dispatch_step`` so that
the CLI and the operator run the same pass. Secrets for alert sinks come from the mapping given
here (the process environment by default) and are never stored in the options.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from superloop_ops.engine import alerts, tuning
from superloop_ops.engine import reconcile as engine
from superloop_ops.engine import thresholds as engine_thresholds

__all__ = ["build_standard_hooks"]


def build_standard_hooks(secrets: Mapping[str, str] | None = None) -> engine.ReconcileHooks:
    """Hooks that evaluate profile drift and dispatch alerts exactly as the contract describes."""
    environ: Mapping[str, str] = os.environ if secrets is None else secrets

    def profile_drift(ctx: engine.PassContext) -> engine.DriftOutcome | None:
        catalog = str(ctx.options.thresholds_file or engine_thresholds.default_catalog_path())
        step = tuning.run_profile_drift_step(
            ctx.ops_dir,
            ctx.loop_id,
            catalog_profiles=tuning.fetch_catalog_profile_names(catalog),
            current_profile=ctx.applied_profile or "",
            now=ctx.now,
            settings=tuning.DriftSettings(
                min_confidence=ctx.options.drift.min_confidence,
                required_streak=ctx.options.drift.required_streak,
                summary_window=ctx.options.drift.summary_window,
            ),
            trace_id=ctx.trace_id,
            transport=ctx.options.transport,
            repo=ctx.paths.repo,
        )
        if step is None:
            return None
        return engine.DriftOutcome(
            drift=step.drift, summary=step.summary, tuning=step.tuning, escalation_written=True
        )

    def alert_dispatch(ctx: engine.PassContext) -> object:
        return alerts.run_alert_dispatch_step(
            ctx.ops_dir,
            ctx.loop_id,
            sinks_config=ctx.options.alerts.config_file,
            secrets=environ,
            now=ctx.now,
            trace_id=ctx.trace_id,
            repo=ctx.paths.repo,
        )

    return engine.ReconcileHooks(profile_drift=profile_drift, alert_dispatch=alert_dispatch)
