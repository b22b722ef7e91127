"""Argument checks and JSON output shared by the per-loop commands.

Several commands (telemetry-summary, profile-drift, alert-dispatch, alert-sink-config) check
``--repo``/``--loop`` and window flags with the same contract messages, in the same order, and
print their document the same way; keeping that here means one command module never has to
import another.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from superloop_ops.core.common.jsonutil import JsonObject, dumps_compact
from superloop_ops.errors import ContractError

__all__ = ["emit", "require_repo", "require_repo_and_loop", "require_window"]

_DIGITS = re.compile(r"\A[0-9]+\Z")


def require_window(value: str, flag: str) -> int:
    """Digits only and >= 1, else the contract's message naming ``flag``."""
    if not _DIGITS.match(value) or int(value) < 1:
        raise ContractError(f"{flag} must be an integer >= 1")
    return int(value)


def require_repo_and_loop(repo: str, loop: str) -> None:
    """Both flags given; checked first, so their errors come before any other flag's."""
    if not repo:
        raise ContractError("--repo is required")
    if not loop:
        raise ContractError("--loop is required")


def require_repo(repo: str, loop: str) -> Path:
    """Both flags given and ``repo`` an existing directory, returned resolved."""
    require_repo_and_loop(repo, loop)
    path = Path(repo)
    if not path.is_dir():
        raise ContractError(f"repo directory not found: {repo}")
    return path.resolve()


def emit(document: JsonObject, pretty: bool) -> None:
    """Compact JSON on one line (the reference's ``jq -c``), or indented with ``--pretty``."""
    print(json.dumps(document, indent=2, ensure_ascii=False) if pretty else dumps_compact(document))
