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
import re
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


_STAMP = re.compile(r"\b(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z")


def _rewrite(text: str, loop_id: str, shift: dt.timedelta) -> str:
    """The recording's text with its loop id renamed and its ISO timestamps moved by ``shift``."""
    if shift:
        text = _STAMP.sub(
            lambda m: (dt.datetime.fromisoformat(m.group(1)) + shift).strftime("%Y-%m-%dT%H:%M:%SZ"), text
        )
    if loop_id != LOOP:
        for old, new in (
            (f'"loop_id":"{LOOP}"', f'"loop_id":"{loop_id}"'),
            (f'"loop_id": "{LOOP}"', f'"loop_id": "{loop_id}"'),
            (f'"current_loop_id": "{LOOP}"', f'"current_loop_id": "{loop_id}"'),
            (f"/loops/{LOOP}/", f"/loops/{loop_id}/"),
            (f"/specs/{LOOP}.md", f"/specs/{loop_id}.md"),
        ):
            text = text.replace(old, new)
    return text


def install(
    scenario: str, repo: Path, *, loop_id: str = LOOP, end_at: dt.datetime | None = None
) -> Installed:
    """Copy the scenario's ``.superloop/`` into ``repo`` with the recorded modification times.

    ``end_at`` moves the whole recording (timestamps in the files and modification times) so
    that the runtime's last write happened then: tests on a real clock (e2e) use it. ``loop_id``
    renames the loop (several recordings in one namespace need distinct loop ids).
    """
    recorded = manifest(scenario)
    target = repo / ".superloop"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(DATA / scenario / ".superloop", target)
    mtimes = {rel: _parse(stamp) for rel, stamp in recorded["mtimes"].items()}
    anchor = max(mtimes.values())
    shift = (end_at - anchor) if end_at is not None else dt.timedelta(0)
    if loop_id != LOOP:
        (target / "loops" / LOOP).rename(target / "loops" / loop_id)
        mtimes = {rel.replace(f"loops/{LOOP}/", f"loops/{loop_id}/", 1): at for rel, at in mtimes.items()}
    if shift or loop_id != LOOP:
        for path in target.rglob("*"):
            if path.is_file():
                path.write_text(_rewrite(path.read_text(encoding="utf-8"), loop_id, shift), encoding="utf-8")
    for rel, moment in mtimes.items():
        path = target / rel
        if path.exists():
            stamp = (moment + shift).timestamp()
            os.utime(path, (stamp, stamp))
    return Installed(repo=repo, manifest=recorded, anchor=anchor + shift)


def events(repo: Path, loop_id: str = LOOP) -> list[dict[str, Any]]:
    path = repo / ".superloop" / "loops" / loop_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
