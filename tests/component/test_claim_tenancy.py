"""A Loop's claim resolves inside the Loop's own namespace, and only to a PVC name (issue 10 item 5).

The settings are read from an environment mapping as at startup; directories are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from superloop_ops.controllers import loop_controller as loop_operator
from superloop_ops.errors import InvalidSpecError
from superloop_ops.models.loop import Loop
from superloop_ops.settings import fetch_settings


def _loop(namespace: str, claim: str) -> Loop:
    spec: dict[str, Any] = {"loopId": "loop-a", "transport": "local", "source": {"pvc": {"claimName": claim}}}
    return Loop.from_body({"metadata": {"name": "l1", "namespace": namespace}, "spec": spec})


def _repo(tmp_path: Path, name: str) -> Path:
    repo = tmp_path / name
    (repo / ".superloop").mkdir(parents=True)
    return repo


def test_a_mapped_claim_is_only_reachable_from_its_own_namespace(tmp_path: Path) -> None:
    team_a = _repo(tmp_path, "team-a-workspace")
    mounted_b = _repo(tmp_path / "mounts" / "team-b", "workspace")
    settings = fetch_settings(
        {
            "SUPERLOOP_PVC_DIRS": f"team-a/workspace={team_a}",
            "SUPERLOOP_PVC_MOUNT_ROOT": str(tmp_path / "mounts"),
            "SUPERLOOP_STATE_DIR": str(tmp_path / "state"),
        }
    )
    in_a = loop_operator.build_loop_target(_loop("team-a", "workspace"), "team-a", "l1", settings)
    assert in_a.repo == team_a
    in_b = loop_operator.build_loop_target(_loop("team-b", "workspace"), "team-b", "l1", settings)
    assert in_b.repo == mounted_b  # team-b's own claim of that name, never team-a's
    with pytest.raises(loop_operator.SourceNotFoundError):
        loop_operator.build_loop_target(_loop("team-c", "workspace"), "team-c", "l1", settings)


@pytest.mark.parametrize("claim", ["/etc", "../x", "a/b", "..", "Upper", "-lead", "with space"])
def test_claim_names_must_be_pvc_names(tmp_path: Path, claim: str) -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.source\.pvc\.claimName"):
        _loop("team-a", claim)
    settings = fetch_settings({"SUPERLOOP_PVC_MOUNT_ROOT": str(tmp_path)})
    with pytest.raises(InvalidSpecError, match="claimName"):
        settings.resolve_pvc_dir("team-a", claim)


@pytest.mark.parametrize("entry", ["workspace=/data/a", "team-a/../x=/data/a", "team-a/x/y=/data/a", "/x=/d"])
def test_pvc_dirs_entries_name_a_namespace_and_a_claim(entry: str) -> None:
    with pytest.raises(InvalidSpecError, match="namespace/claim=/path"):
        fetch_settings({"SUPERLOOP_PVC_DIRS": entry})
