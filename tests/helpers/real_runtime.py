"""Install a recorded real-runtime scenario (tests/data/real-runtime/) into a test repository.

The fixtures' timestamps are the recording's. A test never uses them as absolute dates: it asks
for the scenario's ``anchor`` (the latest moment the runtime touched a file, from the manifest)
and puts its frozen clock at ``anchor + offset``. Modification times, which git does not keep,
are restored from the manifest so that liveness from file times reads as it did when recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "real-runtime"
LOOP = "a"


@dataclass(frozen=True)
class Installed:
    repo: Path
    manifest: dict[str, Any]
    anchor: dt.datetime
    """When the runtime last wrote (the end of the recording)."""

    def at(self, seconds: float) -> dt.datetime:
        return self.anchor + dt.timedelta(seconds=seconds)


def scenarios() -> list[str]:
    return sorted(path.name for path in DATA.iterdir() if (path / "manifest.json").is_file())


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def manifest(scenario: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / scenario / "manifest.json").read_text(encoding="utf-8"))
    return loaded


def install(scenario: str, repo: Path) -> Installed:
    """Copy the scenario's ``.superloop/`` into ``repo`` with the recorded modification times."""
    recorded = manifest(scenario)
    target = repo / ".superloop"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(DATA / scenario / ".superloop", target)
    mtimes = {rel: _parse(stamp) for rel, stamp in recorded["mtimes"].items()}
    for rel, moment in mtimes.items():
        path = target / rel
        if path.exists():
            os.utime(path, (moment.timestamp(), moment.timestamp()))
    return Installed(repo=repo, manifest=recorded, anchor=max(mtimes.values()))


def events(repo: Path, loop_id: str = LOOP) -> list[dict[str, Any]]:
    path = repo / ".superloop" / "loops" / loop_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
