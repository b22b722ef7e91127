"""Tuning shell: telemetry summary and profile-drift evaluation on a loop's ops directory.

Reads bounded windows of ``telemetry/reconcile.jsonl`` and ``telemetry/control.jsonl`` (only the
file's tail is read, never the whole journal), calls ``core.tuning.telemetry_summary`` and
``core.tuning.drift``, then writes ``profile-drift.json``, appends ``telemetry/profile-drift.jsonl`` and,
on the activation edge, the ``profile_drift_detected`` escalation. Used by the CLI commands and,
through ``ensure_window_drift_evaluation``, by the reconcile engine's step-13 hook
(``engine.loop.pass_hooks``); ``run_profile_drift_step`` is the same step with its own escalation.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.tuning import drift, telemetry_summary
from superloop_ops.engine.loop import threshold_files
from superloop_ops.errors import ContractError
from superloop_ops.journal import commit, files, layout, tail

__all__ = [
    "THRESHOLD_CATALOG_NAME",
    "DriftSettings",
    "ProfileDriftStep",
    "WindowDriftEvaluation",
    "compute_summary",
    "ensure_drift_evaluation",
    "ensure_window_drift_evaluation",
    "fetch_catalog_profile_names",
    "fetch_tail_lines",
    "fetch_window_records",
    "resolve_threshold_catalog_path",
    "run_profile_drift_step",
    "shipped_config_path",
]

THRESHOLD_CATALOG_NAME = threshold_files.CATALOG_FILENAME
_TAIL_BLOCK = 64 * 1024
# Re-exported: the alert engines look up their shipped sink catalog through this module.
shipped_config_path = threshold_files.shipped_config_path


def resolve_threshold_catalog_path(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """``--thresholds-file`` > ``OPS_MANAGER_THRESHOLD_PROFILES_FILE`` > shipped catalog."""
    return threshold_files.compute_catalog_path(explicit, env)


def fetch_catalog_profile_names(path: str) -> list[str]:
    """Profile names of a threshold catalog (only ``profiles`` being an object is required here)."""
    document = files.read_json(Path(path))
    profiles = document.get("profiles") if isinstance(document, dict) else None
    if not isinstance(profiles, dict):
        raise ContractError(f"invalid threshold profiles file: {path}")
    return list(profiles)


def fetch_tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` physical lines, read backwards in large blocks (windows hold many lines)."""
    return tail.fetch_last_lines(path, count, block=_TAIL_BLOCK)


def fetch_window_records(path: Path, count: int) -> list[Any]:
    """Parsed records of the last ``count`` lines; blank and unparsable lines yield nothing."""
    return _parse_window(path, count)


#: (path, window, inode, size, mtime) of a log; None when it is missing
_WindowKey = tuple[str, int, int, int, int] | None

#: observations kept (a few hundred bytes each): enough for the passes running at once
_OBSERVATIONS_KEPT = 16
_OBSERVATIONS: OrderedDict[tuple[_WindowKey, _WindowKey], telemetry_summary.WindowObservation] = OrderedDict()
_OBSERVATIONS_LOCK = threading.Lock()


def _window_key(path: Path, count: int) -> _WindowKey:
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (str(path), count, info.st_ino, info.st_size, info.st_mtime_ns)


def _observe_windows(
    reconcile_path: Path, control_path: Path, window: int
) -> telemetry_summary.WindowObservation:
    """The observation of both windows. A pass summarizes the same windows twice (the drift
    evaluation, then the status surface): the last few observations are kept, keyed by each log's
    (inode, size, mtime), so the second summary of unchanged logs reads and parses nothing (issue 12)."""
    key = (_window_key(reconcile_path, window), _window_key(control_path, window))
    with _OBSERVATIONS_LOCK:
        observation = _OBSERVATIONS.get(key)
        if observation is not None:
            _OBSERVATIONS.move_to_end(key)
            return observation
    observation = telemetry_summary.compute_window_observation(
        _parse_window(reconcile_path, window), _parse_window(control_path, window)
    )
    with _OBSERVATIONS_LOCK:
        _OBSERVATIONS[key] = observation
        while len(_OBSERVATIONS) > _OBSERVATIONS_KEPT:
            _OBSERVATIONS.popitem(last=False)
    return observation


def _parse_window(path: Path, count: int) -> list[Any]:
    records: list[Any] = []
    try:
        lines = fetch_tail_lines(path, count)
    except FileNotFoundError:
        return records
    for line in lines:
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def compute_summary(
    repo: Path,
    loop_id: str,
    *,
    window: int,
    now: dt.datetime,
    reconcile_file: str | Path | None = None,
    control_file: str | Path | None = None,
) -> JsonObject:
    """The telemetry summary of one loop; fails closed when reconcile telemetry is missing."""
    if window < 1:
        raise ContractError("--window must be an integer >= 1")
    telemetry_dir = layout.loop_ops_dir(repo, loop_id) / "telemetry"
    reconcile_label = str(reconcile_file or telemetry_dir / "reconcile.jsonl")
    control_label = str(control_file or telemetry_dir / "control.jsonl")
    reconcile_path, control_path = Path(reconcile_label), Path(control_label)
    if not reconcile_path.is_file():
        raise ContractError(f"reconcile telemetry file not found: {reconcile_label}")
    source = telemetry_summary.SummarySource(
        repo_path=str(repo),
        loop_id=loop_id,
        reconcile_telemetry_file=reconcile_label,
        control_telemetry_file=control_label,
        window=window,
    )
    observation = _observe_windows(reconcile_path, control_path, window)
    return telemetry_summary.build_summary_document(observation, source=source, now=now)


def ensure_drift_evaluation(
    inputs: drift.DriftInputs,
    *,
    catalog_profiles: Collection[str],
    state_file: Path,
    history_file: Path,
    now: dt.datetime,
    unknown_recommendation: Literal["fail", "ignore"] = "fail",
    tolerate_corrupt_state: bool = False,
    journal: commit.JournalWrites = commit.DIRECT,
) -> JsonObject:
    """Evaluate, write ``profile-drift.json`` and append its history row (through ``journal``:
    at once, or staged in a reconcile pass's commit); returns the document."""
    checked = drift.validate_drift_profiles(
        inputs, catalog_profiles, unknown_recommendation=unknown_recommendation
    )
    state_file.parent.mkdir(parents=True, exist_ok=True)
    history_file.parent.mkdir(parents=True, exist_ok=True)
    previous: object = {}
    if state_file.is_file():
        text = state_file.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            try:
                previous = json.loads(text)
            except ValueError:
                if not tolerate_corrupt_state:
                    raise ContractError(f"invalid drift state JSON: {state_file}") from None
    document = drift.compute_drift_state(previous, checked, now=now)
    journal.put_json(state_file, document)
    journal.add_rows(history_file, [drift.build_drift_history_row(document, now=now)])
    return document


@dataclass(frozen=True)
class DriftSettings:
    """Reconcile's drift settings (flag > env > default is resolved by the caller)."""

    min_confidence: str = "medium"
    required_streak: int = 3
    summary_window: int = telemetry_summary.DEFAULT_SUMMARY_WINDOW


@dataclass(frozen=True)
class WindowDriftEvaluation:
    """One drift evaluation and the telemetry summary it used (None when there was none)."""

    document: JsonObject
    summary: JsonObject | None


def ensure_window_drift_evaluation(
    repo: Path,
    loop_id: str,
    *,
    applied_profile: str,
    settings: DriftSettings,
    catalog_profiles: Collection[str],
    state_file: Path,
    history_file: Path,
    now: dt.datetime,
    reconcile_file: Path | None = None,
    control_file: Path | None = None,
    journal: commit.JournalWrites = commit.DIRECT,
) -> WindowDriftEvaluation:
    """Reconcile step 13's evaluation: summary over the drift window, then one tolerant evaluation.

    A summary failure means "no summary"; a recommendation the catalog lacks counts as no
    recommendation and a corrupt drift state restarts the streak (deliberate fixes of reference
    defects). Writes ``state_file`` and appends ``history_file``.
    """
    summary: JsonObject | None
    try:
        summary = compute_summary(
            repo,
            loop_id,
            window=settings.summary_window,
            now=now,
            reconcile_file=reconcile_file,
            control_file=control_file,
        )
    except (ContractError, OSError):
        summary = None
    inputs = drift.DriftInputs(
        loop_id=loop_id,
        applied_profile=applied_profile,
        recommended_profile=str(summary.get("recommendedProfile") or "") if summary else "",
        recommendation_confidence=str(summary.get("confidence") or "low") if summary else "low",
        min_confidence=settings.min_confidence,
        required_streak=settings.required_streak,
        summary_window=settings.summary_window,
        rationale=str(summary.get("rationale") or "") if summary else "",
    )
    document = ensure_drift_evaluation(
        inputs,
        catalog_profiles=catalog_profiles,
        state_file=state_file,
        history_file=history_file,
        now=now,
        unknown_recommendation="ignore",
        tolerate_corrupt_state=True,
        journal=journal,
    )
    return WindowDriftEvaluation(document=document, summary=summary)


@dataclass(frozen=True)
class ProfileDriftStep:
    """What reconcile merges into state.json: ``drift`` (with traceId) and ``tuning`` (or None)."""

    drift: JsonObject
    tuning: JsonObject | None
    summary: JsonObject | None
    escalation: JsonObject | None


def run_profile_drift_step(
    ops_dir: Path,
    loop_id: str,
    *,
    catalog_profiles: Collection[str],
    current_profile: str,
    now: dt.datetime,
    settings: DriftSettings | None = None,
    trace_id: str | None = None,
    transport: str = "local",
    repo: Path | None = None,
    state_file: Path | None = None,
    history_file: Path | None = None,
) -> ProfileDriftStep | None:
    """Reconcile step 13: summary over the drift window, drift evaluation, escalation on activation.

    Returns None when the loop has no reconcile telemetry yet. Never aborts reconcile for drift's
    own data: a corrupt ``profile-drift.json`` restarts the streak, and a recommendation the
    catalog lacks counts as no recommendation (both deliberate fixes of reference defects).
    ``state_file``/``history_file`` override the default drift paths (``--drift-state-file``...).
    """
    chosen = settings or DriftSettings()
    telemetry_dir = ops_dir / "telemetry"
    reconcile_file = telemetry_dir / "reconcile.jsonl"
    if not reconcile_file.is_file():
        return None
    state_file = state_file or ops_dir / "profile-drift.json"
    history_file = history_file or telemetry_dir / "profile-drift.jsonl"
    evaluation = ensure_window_drift_evaluation(
        repo or ops_dir.parents[2],
        loop_id,
        applied_profile=current_profile,
        settings=chosen,
        catalog_profiles=catalog_profiles,
        state_file=state_file,
        history_file=history_file,
        now=now,
    )
    document, summary = evaluation.document, evaluation.summary
    escalation = drift.build_drift_escalation(
        document,
        loop_id=loop_id,
        trace_id=trace_id,
        transport=transport,
        state_file=str(ops_dir / "state.json"),
        drift_state_file=str(state_file),
        drift_history_file=str(history_file),
        now=now,
    )
    if escalation is not None:
        files.append_jsonl(ops_dir / "escalations.jsonl", [escalation])
    drift_with_trace = {**document, "traceId": trace_id} if trace_id else dict(document)
    return ProfileDriftStep(
        drift=drift_with_trace,
        tuning=drift.build_tuning_block(summary, current_profile),
        summary=summary,
        escalation=escalation,
    )
