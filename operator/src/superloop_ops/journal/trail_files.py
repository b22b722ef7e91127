"""The journal files a remediation trail reads (``superloop-ops trail``, ``kubectl superloop trail``).

Under a state directory (the operator's namespace state directory, or a repository): every
``.superloop/ops-manager/<loop>/`` there or one level below, and each Fleet's
``.superloop/ops-manager/fleet/<name>/telemetry/trail.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from superloop_ops.errors import ContractError
from superloop_ops.journal import files

__all__ = ["LOOP_FILES", "read_journal"]

#: journal file kind (``core.handoff.remediation_trail``) -> its path below a loop's ops directory
LOOP_FILES: Mapping[str, str] = {
    "remediations": "telemetry/remediations.jsonl",
    "escalations": "escalations.jsonl",
    "alert_dispatch": "telemetry/alerts.jsonl",
    "handoff_intents": "telemetry/handoff-intents.jsonl",
    "control": "intents.jsonl",
    "reconcile": "telemetry/reconcile.jsonl",
}


def _ops_roots(state_dir: Path) -> Iterator[Path]:
    for base in (state_dir, *sorted(p for p in state_dir.glob("*") if p.is_dir())):
        root = base / ".superloop" / "ops-manager"
        if root.is_dir():
            yield root


def read_journal(state_dirs: list[Path]) -> dict[str, list[Any]]:
    """Rows by file kind, from every loop and fleet under the state directories."""
    journal: dict[str, list[Any]] = {kind: [] for kind in (*LOOP_FILES, "fleet_trail")}
    for state_dir in state_dirs:
        if not state_dir.is_dir():
            raise ContractError(f"--state-dir is not a directory: {state_dir}")
        for root in _ops_roots(state_dir):
            for loop_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "fleet"):
                for kind, relative in LOOP_FILES.items():
                    journal[kind].extend(files.read_jsonl(loop_dir / relative))
            for trail_file in sorted(root.glob("fleet/*/telemetry/trail.jsonl")):
                journal["fleet_trail"].extend(files.read_jsonl(trail_file))
    return journal
