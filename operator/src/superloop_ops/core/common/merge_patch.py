"""JSON merge patches (RFC 7386), computed and applied in memory.

A status writer that skips unchanged writes must compare what the API server will store, not
what it would send: a merge patch removes members set to ``null`` at any depth of an object and
merges nested objects member by member (arrays and scalars are replaced whole). A computed status
with nested nulls, or without a nested key the stored one still has, therefore never equals the
stored status. ``compute_merge_patch`` gives the smallest patch that makes the stored document
what the writer means (stale members removed with an explicit ``null``), and ``apply_merge_patch``
is what the server does with it, so the writer can compare before it writes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from superloop_ops.core.common.jsonutil import JsonObject

__all__ = ["apply_merge_patch", "compute_merge_patch"]


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch): the document the server stores after the patch."""
    if not isinstance(patch, Mapping):
        return patch
    result: JsonObject = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def compute_merge_patch(
    stored: Mapping[str, Any], desired: Mapping[str, Any], *, owned: Collection[str] | None = None
) -> JsonObject:
    """The smallest merge patch turning ``stored`` into ``desired`` as the server stores it.

    ``null`` members of ``desired`` mean "absent". A top-level member of ``stored`` that
    ``desired`` lacks is removed only when ``owned`` is None or names it (other writers' members
    are left alone); below the top level the writer owns everything. An empty result means the
    write would change nothing.
    """
    patch: JsonObject = {}
    for key, value in desired.items():
        if value is None:
            continue
        old = stored.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = compute_merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif old is None or old != apply_merge_patch(None, value):
            patch[key] = value
    for key in stored:
        if desired.get(key) is None and (owned is None or key in owned):
            patch[key] = None
    return patch
