"""JSON merge patches: applied as RFC 7386 says, and computed so that an unchanged document
needs no write."""

from __future__ import annotations

from typing import Any

import pytest

from superloop_ops.core.common.merge_patch import apply_merge_patch, compute_merge_patch

# RFC 7386, Appendix A (original, patch, result).
RFC_CASES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_CASES)
def test_apply_follows_rfc_7386(original: Any, patch: Any, result: Any) -> None:
    assert apply_merge_patch(original, patch) == result


def test_nested_nulls_and_equal_content_need_no_patch() -> None:
    stored = {"health": {"status": "healthy", "metrics": {"lag": 3}}, "reasonCodes": []}
    desired = {
        "health": {"status": "healthy", "metrics": {"lag": 3, "streak": None}, "note": None},
        "reasonCodes": [],
    }
    assert compute_merge_patch(stored, desired) == {}


def test_stale_nested_keys_are_removed_explicitly() -> None:
    stored = {"health": {"status": "degraded", "metrics": {"lag": 3, "old": 1}}}
    desired = {"health": {"status": "healthy", "metrics": {"lag": 3}}}
    patch = compute_merge_patch(stored, desired)
    assert patch == {"health": {"status": "healthy", "metrics": {"old": None}}}
    assert apply_merge_patch(stored, patch) == desired


def test_top_level_keys_of_other_writers_are_left_alone() -> None:
    stored = {"lifecycle": "running", "drift": {"x": 1}, "theirs": "kept"}
    desired = {"lifecycle": "running", "drift": None}
    patch = compute_merge_patch(stored, desired, owned=("lifecycle", "drift"))
    assert patch == {"drift": None}
    assert apply_merge_patch(stored, patch) == {"lifecycle": "running", "theirs": "kept"}


def test_applying_the_computed_patch_stores_the_desired_document() -> None:
    stored = {"a": {"b": [1, 2], "c": "x"}, "d": 1, "e": {"f": {"g": 1}}}
    desired = {"a": {"b": [1], "c": None, "h": {"i": None, "j": 2}}, "d": None, "e": "flat"}
    patch = compute_merge_patch(stored, desired)
    assert apply_merge_patch(stored, patch) == {"a": {"b": [1], "h": {"j": 2}}, "e": "flat"}
    assert compute_merge_patch(apply_merge_patch(stored, patch), desired) == {}
