"""Reading the threshold profile catalog from disk (the pure rules are in ``core.loop.threshold_profiles``).

Catalog path precedence is flag, then ``OPS_MANAGER_THRESHOLD_PROFILES_FILE``, then the shipped
``config/ops-manager-threshold-profiles.v1.json`` of the install root (the checkout, or the
directory named by ``SUPERLOOP_OPS_HOME``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from superloop_ops.core.loop import threshold_profiles
from superloop_ops.errors import ContractError

__all__ = [
    "CATALOG_FILENAME",
    "PROFILES_FILE_ENV",
    "PROFILE_ENV",
    "compute_catalog_path",
    "default_catalog_path",
    "fetch_catalog",
    "fetch_profile",
    "shipped_config_path",
]

CATALOG_FILENAME = "ops-manager-threshold-profiles.v1.json"
PROFILES_FILE_ENV = "OPS_MANAGER_THRESHOLD_PROFILES_FILE"
PROFILE_ENV = "OPS_MANAGER_THRESHOLD_PROFILE"


def shipped_config_path(name: str) -> Path:
    """``<install>/config/<name>``: ``$SUPERLOOP_OPS_HOME/config``, the checkout's, or package data."""
    home = os.environ.get("SUPERLOOP_OPS_HOME")
    if home:
        return Path(home) / "config" / name
    # operator/src/superloop_ops/engine/loop/threshold_files.py -> the checkout root is five levels up.
    checkout = Path(__file__).resolve().parents[5] / "config" / name
    if checkout.is_file():
        return checkout
    packaged = Path(__file__).resolve().parents[2] / "data" / name
    return packaged if packaged.is_file() else checkout


def default_catalog_path() -> Path:
    """The shipped threshold catalog (see `shipped_config_path`)."""
    return shipped_config_path(CATALOG_FILENAME)


def compute_catalog_path(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    """Flag, then the env variable (empty counts as unset), then the shipped default."""
    environ = os.environ if env is None else env
    if flag:
        return flag
    from_env = environ.get(PROFILES_FILE_ENV, "")
    return from_env or str(default_catalog_path())


def fetch_catalog(path: str) -> object:
    """The parsed catalog; a missing or unparsable file fails closed with the contract's message."""
    file = Path(path)
    if not file.is_file():
        raise ContractError(f"threshold profiles file not found: {path}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"invalid threshold profiles JSON: {path}") from exc


def fetch_profile(path: str, profile: str | None = None) -> threshold_profiles.ResolvedProfile:
    """Resolve ``profile`` (or the catalog default) from the catalog at ``path``."""
    return threshold_profiles.compute_profile(fetch_catalog(path), source_file=path, profile=profile)
