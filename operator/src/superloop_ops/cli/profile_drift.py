"""``superloop-ops profile-drift``: one advisory drift evaluation (applied vs recommended profile)."""

from __future__ import annotations

import argparse
from pathlib import Path

from superloop_ops.cli._common import emit, require_repo, require_repo_and_loop, require_window
from superloop_ops.clock import SystemClock
from superloop_ops.core.tuning.drift import DriftInputs
from superloop_ops.engine.loop import tuning_pass
from superloop_ops.journal import layout

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="", help="repository root")
    parser.add_argument("--loop", default="", help="loop id")
    parser.add_argument("--applied-profile", default="", help="profile currently applied")
    parser.add_argument("--recommended-profile", default="", help="profile the telemetry summary recommends")
    parser.add_argument("--thresholds-file", default="", help="threshold profile catalog")
    parser.add_argument("--recommendation-confidence", default="low", help="low | medium | high")
    parser.add_argument("--min-confidence", default="medium", help="low | medium | high")
    parser.add_argument("--required-streak", default="3", help="eligible mismatches needed to activate drift")
    parser.add_argument("--summary-window", default="200", help="summary window (recorded only)")
    parser.add_argument("--rationale", default="", help="recommendation rationale")
    parser.add_argument("--drift-state-file", default="", help="profile-drift.json path")
    parser.add_argument("--drift-history-file", default="", help="profile-drift.jsonl path")
    parser.add_argument("--pretty", action="store_true", help="indent the JSON output")


def run(args: argparse.Namespace) -> int:
    require_repo_and_loop(args.repo, args.loop)
    streak = require_window(args.required_streak, "--required-streak")
    window = require_window(args.summary_window, "--summary-window")
    inputs = DriftInputs(
        loop_id=args.loop,
        applied_profile=args.applied_profile,
        recommended_profile=args.recommended_profile,
        recommendation_confidence=args.recommendation_confidence,
        min_confidence=args.min_confidence,
        required_streak=streak,
        summary_window=window,
        rationale=args.rationale,
    )
    repo = require_repo(args.repo, args.loop)
    catalog_path = tuning_pass.resolve_threshold_catalog_path(args.thresholds_file or None)
    profiles = tuning_pass.fetch_catalog_profile_names(catalog_path)
    ops_dir = layout.loop_ops_dir(repo, args.loop)
    document = tuning_pass.ensure_drift_evaluation(
        inputs,
        catalog_profiles=profiles,
        state_file=Path(args.drift_state_file) if args.drift_state_file else ops_dir / "profile-drift.json",
        history_file=Path(args.drift_history_file)
        if args.drift_history_file
        else ops_dir / "telemetry" / "profile-drift.jsonl",
        now=SystemClock().now(),
    )
    emit(document, args.pretty)
    return 0
