"""Where the manager's journal lives in a repository: the reference layout, named once.

Every per-loop file (cursor, state, health, intents, telemetry, escalations, alert dispatch,
drift, the sprite service's idempotency store) sits under ``<repo>/.superloop/ops-manager/<loop>/``.
Callers decide whether the result is made absolute: some surfaces echo the path as given.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["loop_ops_dir"]


def loop_ops_dir(repo: Path, loop_id: str) -> Path:
    """``<repo>/.superloop/ops-manager/<loop>``, without resolving ``repo``."""
    return Path(repo) / ".superloop" / "ops-manager" / loop_id
