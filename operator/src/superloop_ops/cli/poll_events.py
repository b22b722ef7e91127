"""``superloop-ops poll-events``: print the loop_run_event envelopes after the cursor (spec §3).

The cursor file is replaced atomically, and only after the whole batch was read and validated:
a failed poll prints no envelope and leaves the cursor where it was.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from superloop_ops.clock import SystemClock
from superloop_ops.core.common.jsonutil import dumps_compact
from superloop_ops.errors import ContractError
from superloop_ops.journal.files import write_json_atomic
from superloop_ops.transports import local

__all__ = ["add_arguments", "default_cursor_file", "run"]

_DIGITS = re.compile(r"\A[0-9]+\Z")


def default_cursor_file(repo: Path, loop_id: str) -> Path:
    """The standalone default (§3.1); reconcile passes ``<ops>/cursor.json`` instead."""
    return local.LoopPaths.of(repo, loop_id).loop_dir / "ops-manager.cursor.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, type=Path, help="repository holding .superloop/")
    parser.add_argument("--loop", required=True, help="loop id")
    parser.add_argument(
        "--cursor-file",
        type=Path,
        default=None,
        help="cursor JSON path (default <repo>/.superloop/loops/<loop>/ops-manager.cursor.json)",
    )
    parser.add_argument("--from-start", action="store_true", help="ignore the cursor and start at line 1")
    parser.add_argument("--max-events", default="0", help="emit at most n events (0 = unlimited)")
    parser.add_argument("--trace-id", default="", help="trace id copied into every envelope")


def run(args: argparse.Namespace) -> int:
    if not _DIGITS.match(str(args.max_events)):
        raise ContractError("--max-events must be a non-negative integer")
    max_events = int(args.max_events)
    cursor_file: Path = args.cursor_file or default_cursor_file(args.repo, args.loop)
    clock = SystemClock()
    local.LoopPaths.of(args.repo, args.loop).require_events()
    position = None if args.from_start else local.read_cursor(cursor_file)
    batch = local.fetch_events(
        args.repo,
        args.loop,
        offset=position.line_offset if position else 0,
        max_events=max_events,
        trace_id=args.trace_id or None,
        now=clock.now(),
        byte_hint=position,
    )
    out = sys.stdout
    for envelope in batch.events:
        out.write(dumps_compact(envelope) + "\n")
    out.flush()
    write_json_atomic(cursor_file, local.build_cursor_document(args.repo, args.loop, batch, clock.now()),
                      pretty=True)
    return 0
