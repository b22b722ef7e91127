"""``superloop-ops project-state``: project lifecycle state from a snapshot (spec loop-core §4).

Without ``--snapshot-file`` the snapshot is taken from the repository on the fly (kept in
memory, so ``evidence.snapshotFile`` is null). The state file is written atomically and the
same document is printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from superloop_ops.clock import SystemClock
from superloop_ops.core.common.jsonutil import dumps_compact
from superloop_ops.core.loop import envelopes, projection
from superloop_ops.errors import ContractError
from superloop_ops.journal import layout
from superloop_ops.journal.files import read_json, write_text_atomic
from superloop_ops.transports import local

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, type=Path, help="repository holding .superloop/")
    parser.add_argument("--loop", required=True, help="loop id")
    parser.add_argument("--snapshot-file", type=Path, default=None, help="loop_run_snapshot JSON file")
    parser.add_argument("--events-file", type=Path, default=None, help="NDJSON of loop_run_event envelopes")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="state file to read and write (default <repo>/.superloop/ops-manager/<loop>/state.json)",
    )
    parser.add_argument("--pretty", action="store_true", help="pretty-print the JSON")


def run(args: argparse.Namespace) -> int:
    paths = local.LoopPaths.of(args.repo, args.loop)
    if not paths.repo.is_dir():
        raise ContractError(f"repository not found: {paths.repo}")
    state_file: Path = args.state_file or layout.loop_ops_dir(paths.repo, args.loop) / "state.json"
    clock = SystemClock()

    snapshot_file: str | None = None
    if args.snapshot_file is None:
        snapshot = local.fetch_snapshot(paths.repo, args.loop, trace_id=None, now=clock.now())
    else:
        snapshot_file = str(args.snapshot_file)
        if not args.snapshot_file.is_file():
            raise ContractError(f"snapshot file not found: {snapshot_file}")
        data = args.snapshot_file.read_bytes()
        snapshot = envelopes.parse_snapshot_envelope(data, args.loop, snapshot_file)

    events: list[dict[str, Any]] = []
    events_file: str | None = None
    if args.events_file is not None:
        events_file = str(args.events_file)
        if not args.events_file.is_file():
            raise ContractError(f"events file not found: {events_file}")
        events = envelopes.parse_event_envelopes(args.events_file.read_bytes(), args.loop, events_file)

    previous: dict[str, Any] | None = None
    if state_file.exists():
        loaded = read_json(state_file)
        previous = loaded if isinstance(loaded, dict) else {}

    state = projection.compute_projection(
        snapshot,
        events,
        previous,
        clock.now(),
        repo_path=str(paths.repo),
        loop_id=args.loop,
        snapshot_file=snapshot_file,
        events_file=events_file,
    )
    text = json.dumps(state, indent=2, ensure_ascii=False) if args.pretty else dumps_compact(state)
    write_text_atomic(state_file, text + "\n")
    print(text)
    return 0
