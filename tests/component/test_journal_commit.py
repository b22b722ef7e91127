"""A reconcile pass's journal writes (issue 12, item 2): only what changed, grouped fsyncs, one write
per log, and the crash guarantees of the two commits (state, then cursor).

Real files and real processes. The fsync and write counts wrap ``os.fsync`` and ``os.write`` with a
counter that calls the real function (nothing is faked; the files are written as in production).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _loop_reconcile_helpers import (
    HUGE_INGEST,
    LOOP,
    event_line,
    isolate_cli_env,
    journal_defects,
    ops_dir,
    write_heartbeat,
    write_runtime_artifacts,
)

from superloop_ops.clock import FrozenClock
from superloop_ops.core.common.jsonutil import format_ts
from superloop_ops.core.loop import threshold_profiles
from superloop_ops.engine.loop import pass_hooks, reconcile_pass
from superloop_ops.journal import commit, crash_points

TRACE = "00000000-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_cli_env(monkeypatch)


def _options(repo: Path) -> reconcile_pass.ReconcileOptions:
    thresholds = threshold_profiles.Thresholds(
        profile=None,
        degraded_ingest_lag_seconds=10**8,
        critical_ingest_lag_seconds=10**9,
        degraded_heartbeat_lag_seconds=10**8,
        critical_heartbeat_lag_seconds=10**9,
        degraded_transport_failure_streak=2,
        critical_transport_failure_streak=4,
    )
    return reconcile_pass.ReconcileOptions(
        repo=repo,
        loop_id=LOOP,
        thresholds=thresholds,
        trace_id=TRACE,
        hooks=pass_hooks.build_standard_hooks({}),
    )


def _append_events(repo: Path, count: int, stamp: str) -> None:
    with (repo / ".superloop" / "loops" / LOOP / "events.jsonl").open("a") as handle:
        handle.writelines(event_line("role_end", stamp, 2) for _ in range(count))


def _stamps(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """(inode, mtime_ns, content) of every journal document (.json) below ``directory``."""
    return {
        str(path.relative_to(directory)): (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(directory.rglob("*.json"))
    }


@pytest.fixture
def counted_io(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts fsyncs and write calls by file (the real calls run); keys are ``fsync:<name>``..."""
    counts: Counter[str] = Counter()

    def name_of(fd: int) -> str:
        try:
            return Path(os.readlink(f"/proc/self/fd/{fd}")).name
        except OSError:
            return "?"

    def counting(kind: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(fd: int, *args: Any) -> Any:
            counts[kind] += 1
            counts[f"{kind}:{name_of(fd)}"] += 1
            return real(fd, *args)

        return wrapper

    monkeypatch.setattr(os, "fsync", counting("fsync", os.fsync))
    monkeypatch.setattr(os, "write", counting("write", os.write))
    return counts


def test_a_pass_with_nothing_new_rewrites_no_unchanged_document(tmp_path: Path) -> None:
    """Same instant, same trace id, no new input: every document whose content is the same is not
    rewritten (same inode, same mtime). Before issue 12 every one of them was replaced."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    repo = tmp_path / "repo"
    write_runtime_artifacts(repo, format_ts(now - dt.timedelta(seconds=5)))
    write_heartbeat(repo, format_ts(now - dt.timedelta(seconds=5)))
    clock = FrozenClock(now)
    assert reconcile_pass.run_reconcile(_options(repo), clock=clock).exit_code == 0
    before = _stamps(ops_dir(repo))
    assert reconcile_pass.run_reconcile(_options(repo), clock=clock).exit_code == 0
    after = _stamps(ops_dir(repo))
    unchanged = [name for name in before if before[name][2] == after[name][2]]
    expected = {
        "cursor.json",
        "health.json",
        "heartbeat.json",
        "profile-drift.json",
        "telemetry/transport-health.json",
    }
    assert expected <= set(unchanged)
    for name in unchanged:
        assert after[name][:2] == before[name][:2], f"{name} was rewritten with the same content"


def test_an_active_pass_makes_one_fsync_per_changed_file_and_one_write_per_log(
    tmp_path: Path, counted_io: Counter[str]
) -> None:
    """A steady active pass (30 new events): at most 17 fsyncs (22 before issue 12: every document
    with its own directory fsync), each log one write and one fsync, state.json written once."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    repo = tmp_path / "repo"
    write_runtime_artifacts(repo, format_ts(now - dt.timedelta(seconds=60)))
    for step in range(3):
        _append_events(repo, 30, format_ts(now + dt.timedelta(seconds=30 * step)))
        write_heartbeat(repo, format_ts(now + dt.timedelta(seconds=30 * step)))
        result = reconcile_pass.run_reconcile(
            _options(repo), clock=FrozenClock(now + dt.timedelta(seconds=30 * step))
        )
        assert result.exit_code == 0
        if step == 1:
            counted_io.clear()  # the third pass is the steady one (every file exists)
    assert counted_io["fsync"] <= 17, counted_io
    for log in ("reconcile.jsonl", "heartbeat.jsonl", "sequence.jsonl", "profile-drift.jsonl"):
        assert counted_io[f"write:{log}"] == 1, (log, counted_io)
        assert counted_io[f"fsync:{log}"] == 1, (log, counted_io)
    state_temps = [key for key in counted_io if key.startswith("fsync:.state.json.")]
    assert sum(counted_io[key] for key in state_temps) == 2  # the state commit, then drift merged


def test_a_batch_writes_a_log_once_and_a_document_staged_twice_once(
    tmp_path: Path, counted_io: Counter[str]
) -> None:
    batch = commit.JournalBatch()
    log = tmp_path / "t" / "rows.jsonl"
    document = tmp_path / "doc.json"
    batch.add_rows(log, [{"n": 1}])
    batch.add_rows(log, [{"n": 2}, {"n": 3}])
    batch.put_json(document, {"v": 1})
    batch.put_json(document, {"v": 2})
    batch.commit()
    assert [json.loads(line)["n"] for line in log.read_text().splitlines()] == [1, 2, 3]
    assert json.loads(document.read_text()) == {"v": 2}
    assert counted_io["write:rows.jsonl"] == 1
    assert counted_io["fsync:rows.jsonl"] == 1
    assert sum(count for key, count in counted_io.items() if key.startswith("fsync:.doc.json.")) == 1
    assert counted_io["fsync"] == 4  # the temp, the log, and the two directories (one new file each)
    assert [path.name for path in tmp_path.rglob("*.tmp")] == []


def test_a_failed_commit_renames_nothing_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """A document that cannot be written (a file where its directory should be) fails the commit
    before any document of it is renamed: the other document keeps its old content."""
    first = tmp_path / "first.json"
    first.write_text('{"old": true}\n')
    (tmp_path / "blocked").write_text("a file, not a directory")
    batch = commit.JournalBatch()
    batch.put_json(first, {"new": True})
    batch.put_json(tmp_path / "blocked" / "second.json", {"new": True})
    with pytest.raises(NotADirectoryError):
        batch.commit()
    assert json.loads(first.read_text()) == {"old": True}
    assert [path.name for path in tmp_path.rglob("*.tmp")] == []


def test_a_failed_rename_leaves_no_temp_file(tmp_path: Path) -> None:
    """A directory where a document should be: the rename fails and its temp file is removed."""
    (tmp_path / "doc.json").mkdir()
    (tmp_path / "doc.json" / "keep").write_text("x")
    batch = commit.JournalBatch()
    batch.put_json(tmp_path / "doc.json", {"new": True})
    with pytest.raises(IsADirectoryError):
        batch.commit()
    assert [path.name for path in tmp_path.rglob("*.tmp")] == []


def test_rows_after_a_torn_last_line_stay_whole(tmp_path: Path) -> None:
    log = tmp_path / "rows.jsonl"
    log.write_bytes(b'{"n": 1}\n{"n": 2, "tor')
    batch = commit.JournalBatch()
    batch.add_rows(log, [{"n": 3}])
    batch.commit()
    lines = log.read_bytes().split(b"\n")
    assert json.loads(lines[-2]) == {"n": 3}
    assert lines[-1] == b""


def _reconcile_process(repo: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != crash_points.ENV}
    if crash_at is not None:
        env[crash_points.ENV] = crash_at
    argv = [sys.executable, "-m", "superloop_ops.cli.main", "reconcile", "--repo", str(repo), "--loop", LOOP]
    return subprocess.run(
        [*argv, *HUGE_INGEST], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.mark.parametrize("point", crash_points.RECONCILE_POINTS)
def test_a_pass_killed_at_each_commit_loses_no_event_and_ingests_none_twice(
    tmp_path: Path, point: str
) -> None:
    """SIGKILL after the state commit (cursor not written), after the cursor's rename (rows not
    written) and before the cursor commit is durable: the next pass leaves a whole journal whose
    cursor covers every event and whose state holds them, and no event is ingested twice."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    repo = tmp_path / "repo"
    write_runtime_artifacts(repo, format_ts(now - dt.timedelta(seconds=60)))
    assert _reconcile_process(repo, None).returncode == 0
    _append_events(repo, 5, format_ts(now))
    killed = _reconcile_process(repo, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert journal_defects(ops_dir(repo)) == []
    assert _reconcile_process(repo, None).returncode == 0
    assert journal_defects(ops_dir(repo)) == []
    cursor = json.loads((ops_dir(repo) / "cursor.json").read_text())
    assert cursor["eventLineOffset"] == 7
    state = json.loads((ops_dir(repo) / "state.json").read_text())
    assert state["cursor"] == {"eventLineOffset": 7, "eventLineCount": 7}
    rows = [
        json.loads(line)
        for line in (ops_dir(repo) / "telemetry" / "reconcile.jsonl").read_text().splitlines()
    ]
    # The killed pass's row is there when it was written before the kill; a pass killed before its
    # cursor was renamed has none, and the next pass ingests its 5 events again (once).
    assert [row["eventsIngested"] for row in rows] == EXPECTED_INGESTS[point]


EXPECTED_INGESTS = {
    "reconcile.cursor": [2, 5],
    "reconcile.rows": [2, 0],
    "reconcile.cursor_commit": [2, 5, 0],
}
