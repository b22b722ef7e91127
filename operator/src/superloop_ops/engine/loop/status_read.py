"""Gather the per-loop status surface from the ops directory (read-only).

JSON documents are read whole (they are small); every log is read only at its physical last
line. A present but unparseable JSON document is an error (the status surface must not hide a
corrupt journal); a bad last log line just reads as "no record".
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.loop import status_surface
from superloop_ops.engine.loop import tuning_pass
from superloop_ops.engine.loop.reconcile_pass import ops_dir_for
from superloop_ops.errors import ContractError
from superloop_ops.journal import tail

__all__ = ["StatusPaths", "SummaryFn", "build_summary_fn", "fetch_status", "fetch_status_documents"]

# (repo, loop id, reconcile telemetry file, control telemetry file, window) -> summary or None.
SummaryFn = Callable[[Path, str, Path, Path, int], JsonObject | None]


def build_summary_fn(now_fn: Callable[[], dt.datetime]) -> SummaryFn:
    """The standard summary (``tuning_pass.compute_summary``) taken at ``now_fn()``: the CLI passes
    the system clock, the operator its injected clock."""

    def summarize(
        repo: Path, loop_id: str, reconcile_file: Path, control_file: Path, window: int
    ) -> JsonObject | None:
        return tuning_pass.compute_summary(
            repo,
            loop_id,
            window=window,
            now=now_fn(),
            reconcile_file=reconcile_file,
            control_file=control_file,
        )

    return summarize


@dataclass(frozen=True)
class StatusPaths:
    """Effective input paths; ``build`` fills the defaults under the ops directory."""

    state_file: Path
    cursor_file: Path
    health_file: Path
    intents_file: Path
    heartbeat_state_file: Path
    heartbeat_telemetry_file: Path
    sequence_state_file: Path
    sequence_telemetry_file: Path
    control_invocations_file: Path
    drift_state_file: Path
    drift_history_file: Path
    alert_dispatch_state_file: Path
    alert_dispatch_telemetry_file: Path
    reconcile_telemetry_file: Path
    control_telemetry_file: Path

    @classmethod
    def build(
        cls,
        repo: Path,
        loop_id: str,
        overrides: dict[str, Path | None] | None = None,
        *,
        ops_dir: Path | None = None,
    ) -> StatusPaths:
        """Defaults under ``ops_dir`` (the operator's journal) or ``<repo>/.superloop/ops-manager/<loop>``."""
        ops = Path(ops_dir).absolute() if ops_dir else ops_dir_for(repo, loop_id)
        tel = ops / "telemetry"
        defaults = {
            "state_file": ops / "state.json",
            "cursor_file": ops / "cursor.json",
            "health_file": ops / "health.json",
            "intents_file": ops / "intents.jsonl",
            "heartbeat_state_file": ops / "heartbeat.json",
            "heartbeat_telemetry_file": tel / "heartbeat.jsonl",
            "sequence_state_file": ops / "sequence-state.json",
            "sequence_telemetry_file": tel / "sequence.jsonl",
            "control_invocations_file": tel / "control-invocations.jsonl",
            "drift_state_file": ops / "profile-drift.json",
            "drift_history_file": tel / "profile-drift.jsonl",
            "alert_dispatch_state_file": ops / "alert-dispatch-state.json",
            "alert_dispatch_telemetry_file": tel / "alerts.jsonl",
            "reconcile_telemetry_file": tel / "reconcile.jsonl",
            "control_telemetry_file": tel / "control.jsonl",
        }
        for key, value in (overrides or {}).items():
            if value is not None:
                defaults[key] = Path(value).absolute()
        return cls(**defaults)

    def to_files(self) -> dict[str, str]:
        """The status document's ``files`` block (camelCase keys)."""
        result: dict[str, str] = {}
        for key, value in self.__dict__.items():
            head, *rest = key.split("_")
            result[head + "".join(part.capitalize() for part in rest)] = str(value)
        return result


def _read_document(path: Path, label: str, *, missing: Any) -> Any:
    if not path.is_file():
        return missing
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"invalid {label} JSON: {path}") from exc


def _as_mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def fetch_status_documents(
    repo: Path,
    loop_id: str,
    paths: StatusPaths,
    *,
    summary_window: int = 200,
    summarize: SummaryFn | None = None,
) -> status_surface.StatusDocuments:
    """Read everything the status surface needs; fails closed as the contract says."""
    if not paths.state_file.is_file() and not paths.health_file.is_file():
        raise ContractError(f"no status artifacts found for loop: {loop_id}")
    summary = None
    if summarize is not None and paths.reconcile_telemetry_file.is_file():
        try:
            summary = summarize(
                Path(repo).absolute(),
                loop_id,
                paths.reconcile_telemetry_file,
                paths.control_telemetry_file,
                summary_window,
            )
        except Exception:  # a broken summary never hides the status (contract: null)
            summary = None
    return status_surface.StatusDocuments(
        repo_path=str(Path(repo).absolute()),
        loop_id=loop_id,
        summary_window=summary_window,
        files=paths.to_files(),
        state=_as_mapping(_read_document(paths.state_file, "state", missing={})),
        cursor=_as_mapping(_read_document(paths.cursor_file, "cursor", missing={})),
        health=_as_mapping(_read_document(paths.health_file, "health", missing={})),
        last_intent=tail.fetch_last_jsonl_row(paths.intents_file),
        last_reconcile=tail.fetch_last_jsonl_row(paths.reconcile_telemetry_file),
        last_control=tail.fetch_last_jsonl_row(paths.control_telemetry_file),
        heartbeat_state=_read_document(paths.heartbeat_state_file, "heartbeat state", missing=None),
        last_heartbeat=tail.fetch_last_jsonl_row(paths.heartbeat_telemetry_file),
        sequence_state=_read_document(paths.sequence_state_file, "sequence state", missing=None),
        last_sequence=tail.fetch_last_jsonl_row(paths.sequence_telemetry_file),
        last_invocation=tail.fetch_last_jsonl_row(paths.control_invocations_file),
        telemetry_summary=summary,
        drift_state=_read_document(paths.drift_state_file, "drift", missing=None),
        dispatch_state=_read_document(paths.alert_dispatch_state_file, "alert dispatch state", missing=None),
        last_alert=tail.fetch_last_jsonl_row(paths.alert_dispatch_telemetry_file),
    )


def fetch_status(
    repo: Path,
    loop_id: str,
    *,
    now: dt.datetime,
    paths: StatusPaths | None = None,
    summary_window: int = 200,
    summarize: SummaryFn | None = None,
) -> JsonObject:
    """The status document of one loop at ``now``."""
    effective = paths or StatusPaths.build(Path(repo).absolute(), loop_id)
    documents = fetch_status_documents(
        repo, loop_id, effective, summary_window=summary_window, summarize=summarize
    )
    return status_surface.compute_status(documents, now)
