"""The runtime artifacts of the ingest fixtures (``tests/data/ingest/runtime``) laid out in a repo."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["INGEST_RUNTIME", "write_ingest_runtime"]

INGEST_RUNTIME = Path(__file__).resolve().parents[1] / "data" / "ingest" / "runtime"


def write_ingest_runtime(
    repo: Path, loop_id: str, *, with_role_end: bool = True, active_run: bool = True
) -> Path:
    """An active loop: state.json, active-run.json (optional), run-summary.json and events.jsonl
    (the base events, plus a ``role_end`` when asked); returns the loop directory."""
    loop_dir = repo / ".superloop" / "loops" / loop_id
    loop_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(INGEST_RUNTIME / "state-active.json", repo / ".superloop" / "state.json")
    if active_run:
        shutil.copy(INGEST_RUNTIME / "active-run.json", repo / ".superloop" / "active-run.json")
    shutil.copy(INGEST_RUNTIME / "run-summary.json", loop_dir / "run-summary.json")
    events = (INGEST_RUNTIME / "events-base.jsonl").read_bytes()
    if with_role_end:
        events += (INGEST_RUNTIME / "event-role-end.jsonl").read_bytes()
    (loop_dir / "events.jsonl").write_bytes(events)
    return loop_dir
