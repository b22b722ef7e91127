"""Names, labels and owner references of the objects a Fleet owns (its Loops and HandoffIntents).

Names are derived, never chosen: an owned Loop is ``<fleet>-<loopId>`` and a HandoffIntent is
``<fleet>-<intentId>``, both made DNS-1123-safe, with a short hash suffix when the readable form
would be too long or had to drop characters (so two ids never map to one name).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject

__all__ = [
    "API_VERSION",
    "FLEET_LABEL",
    "INTENT_ID_ANNOTATION",
    "MANAGED_BY_LABEL",
    "MANAGER",
    "SPEC_HASH_ANNOTATION",
    "build_owner_reference",
    "compute_dns_name",
    "compute_intent_name",
    "compute_loop_name",
    "compute_spec_hash",
]

FLEET_LABEL = "ops.superloop.dev/fleet"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "superloop-ops"
SPEC_HASH_ANNOTATION = "ops.superloop.dev/fleet-spec-hash"
INTENT_ID_ANNOTATION = "ops.superloop.dev/intent-id"
API_VERSION = "ops.superloop.dev/v1alpha1"
_UNSAFE = re.compile(r"[^a-z0-9-]+")
_READABLE = re.compile(r"^[a-z0-9._:-]*$")
_MAX_NAME = 63
_HASH_LEN = 8


def compute_dns_name(raw: str, *, max_length: int = _MAX_NAME) -> str:
    """A DNS-1123 label from ``raw``: lowercase, unsafe runs to ``-``, hashed suffix when lossy or long.

    ``.``, ``_`` and ``:`` all become ``-``; an id that had any other character (upper case,
    spaces, ...) or that does not fit gets ``-<8 hex of sha256(raw)>`` so distinct ids keep
    distinct names.
    """
    lowered = raw.lower()
    readable = _UNSAFE.sub("-", lowered.replace(".", "-").replace("_", "-").replace(":", "-")).strip("-")
    lossy = raw != lowered or not _READABLE.match(lowered)
    if not lossy and readable and len(readable) <= max_length:
        return readable
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:_HASH_LEN]
    head = readable[: max_length - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{digest}" if head else f"x-{digest}"


def compute_loop_name(fleet_name: str, loop_id: str) -> str:
    """Name of the Loop a Fleet materialises for an inline entry."""
    return compute_dns_name(f"{fleet_name}-{loop_id}")


def compute_intent_name(fleet_name: str, intent_id: str) -> str:
    """Name of the HandoffIntent proposed for a plan intent (stable per intent id)."""
    return compute_dns_name(f"{fleet_name}-{intent_id}")


def compute_spec_hash(spec: Mapping[str, Any]) -> str:
    """Fingerprint of a desired spec: the apiserver adds defaults, so specs are compared by hash."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def build_owner_reference(fleet_name: str, fleet_uid: str) -> JsonObject:
    """The Fleet as controller owner: garbage collection deletes owned objects with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Fleet",
        "name": fleet_name,
        "uid": fleet_uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }
