"""Ingestion cost versus history length: a first poll, then an incremental poll after 100 events.

Generates one loop with 1,000 / 10,000 / 100,000 events in a temporary repository and times,
each in a "fresh process" state (per-process memos cleared, so only the cursor file's byte hint
helps): the first poll from offset 0, an incremental poll after 100 appended events, and the
snapshot before and after the same append (the snapshot's digest memo is kept for the second
one, as in the long-running operator). The incremental columns must stay flat as history grows.

    .venv/bin/python benchmarks/bench_ingest.py [--sizes 1000,10000,100000] [--reference DIR]

With ``--reference`` (a checkout of the bash reference), its poll script and ours are timed on
one extra, small loop (``--reference-events``, default 200): the reference spawns about ten jq
processes per line, so 1,000 events already take minutes on a loaded machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from superloop_ops.journal.files import write_json_atomic
from superloop_ops.transports import local

LOOP = "bench-loop"
NOW = dt.datetime(2026, 3, 1, 8, 0, 0, tzinfo=dt.UTC)


def _event(seq: int) -> bytes:
    event = {
        "timestamp": "2026-03-01T08:00:00Z",
        "event": "role_end" if seq % 4 else "iteration_start",
        "loop_id": LOOP,
        "run_id": "run-bench",
        "iteration": seq // 4 + 1,
        "role": "implementer",
        "status": "ok",
        "data": {"duration_ms": seq % 997, "seq": seq},
    }
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _make_repo(root: Path, count: int) -> Path:
    loop_dir = root / ".superloop" / "loops" / LOOP
    loop_dir.mkdir(parents=True)
    (root / ".superloop" / "state.json").write_text(json.dumps({"active": True, "current_loop_id": LOOP}))
    (loop_dir / "events.jsonl").write_bytes(b"".join(_event(i) for i in range(count)))
    return loop_dir


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return (time.perf_counter() - start) * 1000.0, result


def _poll_with_cursor(repo: Path, cursor_file: Path) -> local.EventBatch:
    """What ``poll-events`` does: read the cursor, poll, persist the cursor atomically."""
    position = local.read_cursor(cursor_file)
    batch = local.fetch_events(
        repo, LOOP, offset=position.line_offset, trace_id=None, now=NOW, byte_hint=position
    )
    write_json_atomic(cursor_file, local.build_cursor_document(repo, LOOP, batch, NOW))
    return batch


def _reference_poll_ms(reference: Path, repo: Path) -> float:
    script = reference / "scripts" / "ops-manager-poll-events.sh"
    cursor_file = repo / "ref-cursor.json"
    start = time.perf_counter()
    subprocess.run(
        ["bash", str(script), "--repo", str(repo), "--loop", LOOP, "--cursor-file", str(cursor_file)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return (time.perf_counter() - start) * 1000.0


def _measure(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        repo = Path(tmp)
        loop_dir = _make_repo(repo, count)
        cursor_file = loop_dir / "ops-manager.cursor.json"
        local.clear_memos()
        first_ms, first = _timed(lambda: _poll_with_cursor(repo, cursor_file))
        local.clear_memos()
        snap_first_ms, _ = _timed(lambda: local.fetch_snapshot(repo, LOOP, trace_id=None, now=NOW))
        with (loop_dir / "events.jsonl").open("ab") as handle:
            handle.write(b"".join(_event(i) for i in range(count, count + 100)))
        snap_incr_ms, _ = _timed(lambda: local.fetch_snapshot(repo, LOOP, trace_id=None, now=NOW))
        local.clear_memos()
        incr_ms, incr = _timed(lambda: _poll_with_cursor(repo, cursor_file))
        assert len(first.events) == count
        assert len(incr.events) == 100
        return {
            "events": count,
            "file_mib": (loop_dir / "events.jsonl").stat().st_size / (1 << 20),
            "first_poll_ms": first_ms,
            "first_scanned_kib": first.scanned_bytes / 1024,
            "incr_poll_ms": incr_ms,
            "incr_scanned_kib": incr.scanned_bytes / 1024,
            "snapshot_first_ms": snap_first_ms,
            "snapshot_incr_ms": snap_incr_ms,
        }


def run(sizes: list[int]) -> list[dict[str, Any]]:
    return [_measure(count) for count in sizes]


def run_reference(reference: Path, count: int) -> tuple[float, float]:
    """(ours, reference) first-poll milliseconds on the same generated loop."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-ref-") as tmp:
        repo = Path(tmp)
        loop_dir = _make_repo(repo, count)
        local.clear_memos()
        ours_ms, _ = _timed(lambda: _poll_with_cursor(repo, loop_dir / "ops-manager.cursor.json"))
        return ours_ms, _reference_poll_ms(reference, repo)


def _print(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'events':>8} {'MiB':>6} {'first poll ms':>14} {'scanned KiB':>12} {'incr poll ms':>13} "
        f"{'scanned KiB':>12} {'snap first ms':>14} {'snap incr ms':>13}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['events']:>8} {row['file_mib']:>6.1f} {row['first_poll_ms']:>14.1f} "
            f"{row['first_scanned_kib']:>12.0f} {row['incr_poll_ms']:>13.1f} "
            f"{row['incr_scanned_kib']:>12.1f} "
            f"{row['snapshot_first_ms']:>14.1f} {row['snapshot_incr_ms']:>13.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated event counts")
    parser.add_argument(
        "--reference", type=Path, default=None, help="bash reference checkout to compare with"
    )
    parser.add_argument("--reference-events", type=int, default=200, help="loop size for the reference run")
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    _print(run(sizes))
    if args.reference is not None:
        ours, theirs = run_reference(args.reference, args.reference_events)
        print(
            f"\nfirst poll of {args.reference_events} events: ours {ours:.1f} ms, reference {theirs:.0f} ms"
        )


if __name__ == "__main__":
    main()
