"""The journal volume fills up (issue 10 fault matrix): fail closed, say so, nothing half-written, recover.

A real full filesystem: a small tmpfs mounted in a private mount namespace (``unshare``; a user
namespace maps the caller to root when it is not root), so no mocks and no host mount. The
pass runs in that namespace through the CLI, exactly as in production; the driver reports what
it saw as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

DRIVER = r'''
import contextlib, io, json, os, sys
from pathlib import Path
from _loop_reconcile_helpers import (HUGE_INGEST, LOOP, event_line, journal_defects, now_ts, ops_dir,
                                     write_runtime_artifacts)
from superloop_ops.cli import main as cli_main

root = Path(sys.argv[1])
root.mkdir(parents=True, exist_ok=True)
if os.system(f"mount -t tmpfs -o size=1m tmpfs {root}") != 0:
    raise SystemExit("cannot mount tmpfs")
repo = root / "repo"
repo.mkdir()
write_runtime_artifacts(repo, now_ts())

def reconcile():
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli_main.main(["reconcile", "--repo", str(repo), "--loop", LOOP, *HUGE_INGEST])
    return code, err.getvalue()

def journal_intact():
    return journal_defects(ops_dir(repo))

report = {}
report["first"] = reconcile()[0]
cursor_before = (ops_dir(repo) / "cursor.json").read_text()
events = repo / ".superloop" / "loops" / LOOP / "events.jsonl"
with events.open("a") as handle:
    handle.write(event_line("role_end", now_ts(), 2))
filler = root / "filler"
fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
with contextlib.suppress(OSError):
    while True:
        os.write(fd, b"\0" * 4096)
os.close(fd)
code, err = reconcile()
report["full"] = {"code": code, "stderr": err, "bad": journal_intact(),
                  "cursor_kept": (ops_dir(repo) / "cursor.json").read_text() == cursor_before}
filler.unlink()
code, err = reconcile()
rows = (ops_dir(repo) / "telemetry" / "reconcile.jsonl").read_text().splitlines()
report["recovered"] = {"code": code, "stderr": err, "bad": journal_intact(),
                       "cursor": json.loads((ops_dir(repo) / "cursor.json").read_text())["eventLineOffset"],
                       "ingested": json.loads(rows[-1])["eventsIngested"]}
print(json.dumps(report))
'''


def _namespace_argv() -> list[str]:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is required for the full-volume test"
    if os.geteuid() == 0:
        return [unshare, "--mount", "--propagation", "private"]
    return [unshare, "--user", "--map-root-user", "--mount", "--propagation", "private"]


def test_a_full_journal_volume_fails_closed_and_recovers(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS / "component"), str(TESTS), *filter(None, [env.get("PYTHONPATH")])]
    )
    done = subprocess.run(
        [*_namespace_argv(), sys.executable, "-c", DRIVER, str(tmp_path / "volume")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["first"] == 0
    full = report["full"]
    assert full["code"] == 1
    assert full["stderr"].startswith("error: journal write failed: No space left on device")
    assert "Traceback" not in full["stderr"]
    assert full["bad"] == []
    assert full["cursor_kept"] is True
    recovered = report["recovered"]
    assert recovered["code"] == 0, recovered["stderr"]
    assert recovered["bad"] == []
    assert recovered["cursor"] == 3
    assert recovered["ingested"] == 1
