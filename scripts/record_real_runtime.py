#!/usr/bin/env python3
"""Re-record tests/data/real-runtime/ from the real Superloop runtime driven by a stub agent.

Usage::

    SUPERLOOP_SH=/path/to/superloop.sh python3 scripts/record_real_runtime.py [--runtime-commit bdd4f9d]
        [--out tests/data/real-runtime] [scenario ...]

The runtime (``superloop.sh`` of Supergent/superloop) is a test tool here, never part of the
project: get it with ``git --git-dir=<mirror> archive <commit> | tar -x -C <dir>``. The helpers in
scripts/real-runtime/ (ours) make a throwaway repository (mkrepo.sh), stand in for the agent
(stub-runner.sh behind the ``claude`` wrapper, which makes the runtime record token usage) and for
the tests (stub-tests.sh). Each scenario runs in a fresh repository; what the operator reads under
``.superloop/`` is copied to ``<out>/<scenario>/.superloop/`` (logs, prompts, last messages, role
and spec texts are dropped) with the repository path replaced by ``/repo`` and the helpers' path by
``/stubs``. ``manifest.json`` says what was run, with which runtime commit and when, and keeps
every copied file's modification time (git does not), so tests can restore them relative to a
frozen clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPERS = HERE / "real-runtime"
DEFAULT_OUT = HERE.parent / "tests" / "data" / "real-runtime"
LOOP = "a"
DROPPED_DIRS = frozenset({"logs", "prompts", "last_messages", "roles", "specs"})
REPO_PLACEHOLDER = "/repo"
HELPERS_PLACEHOLDER = "/stubs"
HOME_PLACEHOLDER = "/home"
PLACEHOLDERS = {
    REPO_PLACEHOLDER: "the throwaway repository",
    HELPERS_PLACEHOLDER: "scripts/real-runtime",
    HOME_PLACEHOLDER: "the stub agent's HOME (its session files)",
}


@dataclasses.dataclass
class Recorder:
    superloop_sh: Path
    work: Path
    home: Path
    snapshot: Callable[[], None]
    commands: list[str] = dataclasses.field(default_factory=list)
    exit_codes: list[int] = dataclasses.field(default_factory=list)

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STUB_", "MKREPO_"))}
        env.update(extra)
        env["SUPERLOOP_SH"] = str(self.superloop_sh)
        env["HOME"] = str(self.home)
        return env

    def _note(self, args: list[str], extra: dict[str, str]) -> None:
        shown = [_normalise(a, self.work) for a in args]
        prefix = " ".join(f"{k}={v}" for k, v in sorted(extra.items()))
        self.commands.append((prefix + " " if prefix else "") + " ".join(shown))

    def mkrepo(self, *args: str, **extra: str) -> None:
        cmd = [str(HELPERS / "mkrepo.sh"), str(self.work), LOOP, *args]
        self._note(["mkrepo.sh", str(self.work), LOOP, *args], extra)
        subprocess.run(cmd, check=True, env=self.env(extra), stdout=subprocess.DEVNULL)

    def superloop(self, *args: str, **extra: str) -> int:
        cmd = [str(self.superloop_sh), *args, "--repo", str(self.work)]
        self._note(["superloop.sh", *args, "--repo", str(self.work)], extra)
        done = subprocess.run(cmd, env=self.env(extra), capture_output=True, text=True, check=False)
        self.exit_codes.append(done.returncode)
        return done.returncode

    def run(self, **extra: str) -> int:
        return self.superloop("run", "--loop", LOOP, **extra)

    def start(self, **extra: str) -> subprocess.Popen[bytes]:
        cmd = [str(self.superloop_sh), "run", "--loop", LOOP, "--repo", str(self.work)]
        self._note([*cmd[:1], "run", "--loop", LOOP, "--repo", str(self.work), "&"], extra)
        return subprocess.Popen(
            cmd, env=self.env(extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


def _complete(r: Recorder) -> None:
    r.mkrepo()
    r.run()


def _tests_fail_then_pass(r: Recorder) -> None:
    r.mkrepo()
    r.run(STUB_TESTS_PASS_AFTER="2")  # noqa: S106


def _approval_waiting(r: Recorder) -> None:
    r.mkrepo("true")
    r.run()


def _approval_approved(r: Recorder) -> None:
    _approval_waiting(r)
    r.superloop("approve", "--loop", LOOP, "--by", "ops", "--note", "ship it")
    r.run()


def _approval_rejected(r: Recorder) -> None:
    _approval_waiting(r)
    r.superloop("approve", "--loop", LOOP, "--by", "ops", "--note", "not yet", "--reject")
    r.run()


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)


def _mid_role(r: Recorder) -> subprocess.Popen[bytes]:
    r.mkrepo()
    proc = r.start(STUB_SLEEP="25")
    _wait_for(r.work / ".superloop" / "loops" / LOOP / "events.jsonl")
    time.sleep(8)
    return proc


def _running(r: Recorder) -> None:
    proc = _mid_role(r)
    r.commands.append("sleep 8  # snapshot taken mid-role; the run is then cancelled")
    r.snapshot()
    subprocess.run(
        [str(r.superloop_sh), "cancel", "--repo", str(r.work)],
        env=r.env({}),
        capture_output=True,
        check=False,
    )
    proc.wait(timeout=60)


def _cancelled(r: Recorder) -> None:
    proc = _mid_role(r)
    r.commands.append("sleep 8")
    r.superloop("cancel")
    proc.wait(timeout=60)


def _runner_failure(r: Recorder) -> None:
    r.mkrepo()
    r.run(STUB_FAIL_ROLE="implementer")


def _role_timeout(r: Recorder) -> None:
    r.mkrepo("false", "5")
    r.run(STUB_HANG_ROLE="tester")


def _max_iterations(r: Recorder) -> None:
    r.mkrepo("false", "0", "2")
    r.run(STUB_NO_PROMISE="1")


def _rate_limited(r: Recorder) -> None:
    # The runtime watches for rate limits only when role timeouts are on; no retries: stop at once.
    r.mkrepo("false", "60")
    r.run(STUB_RATE_LIMIT_ROLE="implementer", SUPERLOOP_RATE_LIMIT_MAX_RETRIES="0")


def _stuck(r: Recorder) -> None:
    r.mkrepo("false", "0", "5", MKREPO_STUCK_THRESHOLD="2")
    r.run(STUB_NO_PROMISE="1", STUB_TESTS_PASS_AFTER="99")  # noqa: S106


SCENARIOS: dict[str, tuple[str, Callable[[Recorder], None]]] = {
    "complete": ("one iteration, promise matched, every gate passes: loop_complete", _complete),
    "tests_fail_then_pass": ("tests fail twice, then pass: complete in iteration 3", _tests_fail_then_pass),
    "approval_waiting": ("approval gate: the run exits with a pending approval.json", _approval_waiting),
    "approval_approved": ("approval gate, approved with superloop.sh approve, run again", _approval_approved),
    "approval_rejected": (
        "approval gate, rejected, run again: a new iteration asks again",
        _approval_rejected,
    ),
    "running": ("a live run mid-role (STUB_SLEEP=25), snapshot 8 s in", _running),
    "cancelled": ("a live run cancelled mid-role with superloop.sh cancel", _cancelled),
    "runner_failure": ("the implementer's runner exits 1: the runtime dies", _runner_failure),
    "role_timeout": ("the tester hangs past a 5 s role timeout", _role_timeout),
    "max_iterations": ("the reviewer never promises: loop_stop after max_iterations 2", _max_iterations),
    "rate_limited": ("the implementer's runner reports a 429-style rate limit", _rate_limited),
    "stuck": ("tests always fail, no promise, stuck threshold 2", _stuck),
}


def _normalise(text: str, work: Path) -> str:
    home = work.parent / "home"
    return (
        text.replace(str(work).replace("/", "-"), REPO_PLACEHOLDER.replace("/", "-"))
        .replace(str(work), REPO_PLACEHOLDER)
        .replace(str(home), HOME_PLACEHOLDER)
        .replace(str(HELPERS), HELPERS_PLACEHOLDER)
    )


def _copy_artifacts(work: Path, dest: Path) -> dict[str, float]:
    source = work / ".superloop"
    mtimes: dict[str, float] = {}
    if dest.exists():
        shutil.rmtree(dest)
    if not source.is_dir():
        return mtimes
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or DROPPED_DIRS.intersection(rel.parts[:-1]):
            continue
        target = dest / ".superloop" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_normalise(path.read_text(encoding="utf-8"), work), encoding="utf-8")
        mtimes[str(rel)] = path.stat().st_mtime
    return mtimes


def record(name: str, superloop_sh: Path, commit: str, out: Path) -> None:
    description, steps = SCENARIOS[name]
    with tempfile.TemporaryDirectory(prefix="superloop-rr-") as tmp:
        work = Path(tmp) / "repo"
        snapshot: dict[str, dict[str, float]] = {}

        def take() -> None:
            snapshot["mtimes"] = _copy_artifacts(work, out / name)

        recorder = Recorder(superloop_sh=superloop_sh, work=work, home=Path(tmp) / "home", snapshot=take)
        recorder.home.mkdir()
        steps(recorder)
        if "mtimes" not in snapshot:
            take()
    manifest = {
        "scenario": name,
        "description": description,
        "loop_id": LOOP,
        "commands": recorder.commands,
        "exit_codes": recorder.exit_codes,
        "runtime": {"repository": "Supergent/superloop", "commit": commit, "script": "superloop.sh"},
        "recorded_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "recorded_with": "scripts/record_real_runtime.py",
        "placeholders": PLACEHOLDERS,
        "mtimes": {
            rel: dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            for rel, value in sorted(snapshot["mtimes"].items())
        },
    }
    (out / name).mkdir(parents=True, exist_ok=True)
    (out / name / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"default: all of {', '.join(SCENARIOS)}")
    parser.add_argument("--superloop-sh", default=os.environ.get("SUPERLOOP_SH"))
    parser.add_argument("--runtime-commit", default=os.environ.get("SUPERLOOP_COMMIT", "bdd4f9d"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.superloop_sh or not Path(args.superloop_sh).is_file():
        parser.error("set SUPERLOOP_SH or pass --superloop-sh: the reference runtime's superloop.sh")
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    for name in args.scenarios or list(SCENARIOS):
        started = time.monotonic()
        record(name, Path(args.superloop_sh).resolve(), args.runtime_commit, args.out)
        print(f"recorded {name} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
