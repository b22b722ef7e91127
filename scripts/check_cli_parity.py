#!/usr/bin/env python3
"""Check that the CLI's outputs are byte-for-byte the same at two git revisions.

Used for refactors that must not change behaviour (issue 9): every command of a fixed list runs
once against the base revision's code and once against the working tree's (or ``--head``'s), on
identical copies of the benchmark fixtures (``benchmarks/bench_loop_reconcile.build_repo`` and
``benchmarks/bench_fleet.build_fleet_repo``), with the wall clock frozen at the same instant.
Compared per command: exit code, stdout, stderr, and every file the command wrote or changed under
the fixture (the journal). Exit 0 when everything matches, 1 with a unified diff otherwise.

    python scripts/check_cli_parity.py --base a075e9e            # base vs the working tree
    python scripts/check_cli_parity.py --base a075e9e --head HEAD

Values that differ between two runs of the *same* code (none today) would be reported as
unstable rather than hidden.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FROZEN = "2026-06-01T12:00:00Z"
LOOP = "bench-loop"

# Runs the CLI in a child with the system clock frozen (argv[1] is the frozen instant) and the
# random sources it draws ids from (uuid4 trace ids, token_hex and pid in control keys) seeded.
RUNNER = """
import datetime as dt, os, random, secrets, sys, uuid
from superloop_ops import clock
rng = random.Random(20260601)
uuid.uuid4 = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)
secrets.token_hex = lambda nbytes=None: "%0*x" % (2 * (nbytes or 32), rng.getrandbits(8 * (nbytes or 32)))
os.getpid = lambda: 4242
frozen = dt.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
clock.SystemClock.now = lambda self: frozen
clock.SystemClock.sleep = lambda self, seconds: None
from superloop_ops.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@dataclass(frozen=True)
class Command:
    name: str
    fixture: str  # "loop" or "fleet"
    argv: tuple[str, ...]


def _loop(name: str, *argv: str) -> Command:
    return Command(name, "loop", argv)


def _fleet(name: str, *argv: str) -> Command:
    return Command(name, "fleet", argv)


# Order matters: later commands read what earlier ones wrote, as a person running the runbook would.
COMMANDS: tuple[Command, ...] = (
    _loop("snapshot", "snapshot", "--repo", "{repo}", "--loop", LOOP, "--trace-id", "t-1"),
    _loop("poll-events", "poll-events", "--repo", "{repo}", "--loop", LOOP, "--max-events", "50"),
    _loop("reconcile", "reconcile", "--repo", "{repo}", "--loop", LOOP, "--pretty"),
    _loop("reconcile-again", "reconcile", "--repo", "{repo}", "--loop", LOOP),
    _loop("status", "status", "--repo", "{repo}", "--loop", LOOP),
    _loop("project-state", "project-state", "--repo", "{repo}", "--loop", LOOP),
    _loop("telemetry-summary", "telemetry-summary", "--repo", "{repo}", "--loop", LOOP, "--pretty"),
    _loop("profile-drift", "profile-drift", "--repo", "{repo}", "--loop", LOOP),
    _loop(
        "control-cancel",
        "control",
        "--repo",
        "{repo}",
        "--loop",
        LOOP,
        "--intent",
        "cancel",
        "--idempotency-key",
        "k-1",
    ),
    _loop(
        "control-replay",
        "control",
        "--repo",
        "{repo}",
        "--loop",
        LOOP,
        "--intent",
        "cancel",
        "--idempotency-key",
        "k-1",
    ),
    _loop("threshold-profiles", "threshold-profile", "--list"),
    _loop("alert-sinks", "alert-sink-config", "--list-sinks"),
    _fleet("fleet-registry", "fleet", "registry", "--repo", "{repo}"),
    _fleet("fleet-reconcile", "fleet", "reconcile", "--repo", "{repo}", "--deterministic-order"),
    _fleet("fleet-policy", "fleet", "policy", "--repo", "{repo}"),
    _fleet("fleet-status", "fleet", "status", "--repo", "{repo}"),
    _fleet("fleet-handoff", "fleet", "handoff", "--repo", "{repo}"),
    _fleet("promotion-gates", "promotion", "gates", "--repo", "{repo}"),
)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    files: dict[str, str]  # relative path -> sha256 of content (content kept for diffs below)
    texts: dict[str, str]


@contextmanager
def _checkout(ref: str | None, scratch: Path) -> Iterator[Path]:
    """The source tree of ``ref`` (None: the working tree as it is)."""
    if ref is None:
        yield REPO
        return
    target = scratch / f"tree-{ref.replace('/', '_')}"
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True)
    target.mkdir()
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    yield target


def _build_fixtures(scratch: Path) -> dict[str, Path]:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "operator" / "src"))
    from benchmarks import bench_fleet, bench_loop_reconcile

    loop_root = scratch / "fixture-loop"
    loop_root.mkdir()
    loop_repo = bench_loop_reconcile.build_repo(loop_root, 300)
    fleet_root = scratch / "fixture-fleet"
    fleet_root.mkdir()
    bench_fleet.build_fleet_repo(fleet_root, 5)
    return {"loop": loop_repo, "fleet": fleet_root}


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = path.read_text(errors="replace")
    return out


def _run_side(tree: Path, fixtures: dict[str, Path], work: Path) -> dict[str, Outcome]:
    repos = {}
    for kind, src in fixtures.items():
        repos[kind] = work / kind
        shutil.copytree(src, repos[kind], symlinks=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPS_MANAGER_", "SUPERLOOP_"))}
    env["PYTHONPATH"] = str(tree / "operator" / "src")
    env["SUPERLOOP_OPS_HOME"] = str(tree)
    outcomes: dict[str, Outcome] = {}
    for command in COMMANDS:
        repo = repos[command.fixture]
        before = _snapshot(repo)
        argv = [a.replace("{repo}", str(repo)) for a in command.argv]
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, FROZEN, *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=300,
        )
        after = _snapshot(repo)
        changed = {p: t for p, t in after.items() if before.get(p) != t}
        outcomes[command.name] = Outcome(
            code=proc.returncode,
            stdout=proc.stdout.replace(str(work), "<work>").replace(str(tree), "<tree>"),
            stderr=proc.stderr.replace(str(work), "<work>").replace(str(tree), "<tree>"),
            files={p: hashlib.sha256(t.encode()).hexdigest() for p, t in changed.items()},
            texts={
                p: t.replace(str(work), "<work>").replace(str(tree), "<tree>") for p, t in changed.items()
            },
        )
    return outcomes


def _diff(label: str, a: str, b: str) -> str:
    return "".join(
        difflib.unified_diff(
            a.splitlines(keepends=True), b.splitlines(keepends=True), f"base/{label}", f"head/{label}", n=1
        )
    )


def compare(base: dict[str, Outcome], head: dict[str, Outcome]) -> list[str]:
    problems = []
    for command in COMMANDS:
        b, h = base[command.name], head[command.name]
        if b.code != h.code:
            problems.append(f"{command.name}: exit code {b.code} != {h.code}")
        for stream in ("stdout", "stderr"):
            if getattr(b, stream) != getattr(h, stream):
                problems.append(
                    f"{command.name}: {stream} differs\n"
                    + _diff(stream, getattr(b, stream), getattr(h, stream))[:20000]
                )
        for path in sorted(set(b.texts) | set(h.texts)):
            if b.texts.get(path) != h.texts.get(path):
                problems.append(
                    f"{command.name}: journal file {path} differs\n"
                    + _diff(path, b.texts.get(path, ""), h.texts.get(path, ""))[:20000]
                )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--head", default=None, help="git revision (default: the working tree)")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="cli-parity-") as tmp:
        scratch = Path(tmp)
        fixtures = _build_fixtures(scratch)
        results = {}
        for side, ref in (("base", args.base), ("head", args.head), ("head-again", args.head)):
            work = scratch / f"work-{side}"
            work.mkdir()
            (scratch / side).mkdir()
            with _checkout(ref, scratch / side) as tree:
                results[side] = _run_side(tree, fixtures, work)
        unstable = compare(results["head"], results["head-again"])
        problems = compare(results["base"], results["head"])
    for line in unstable:
        print(f"UNSTABLE (differs between two runs of the same code): {line}")
    for line in problems:
        print(f"DIFF {line}")
    for name, outcome in results["head"].items():
        print(f"  {name}: exit {outcome.code}, {len(outcome.stdout)} bytes out, {len(outcome.texts)} files")
    counts = sum(len(o.texts) for o in results["head"].values())
    seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    print(
        f"{len(COMMANDS)} commands, {counts} journal files written, base={args.base} "
        f"head={args.head or 'working tree'}: {'MATCH' if not problems else f'{len(problems)} differences'}"
        f" ({seconds:.0f} s)"
    )
    return 1 if problems or unstable else 0


if __name__ == "__main__":
    sys.exit(main())
