"""Operator shards: which replica owns which Loop (core.common.shards, the kopf filters)."""

from __future__ import annotations

import types
from collections import Counter

import pytest

from superloop_ops.core.common.shards import (
    SHARD_LABEL,
    Shard,
    compute_shard_label,
    compute_shard_of,
    compute_watch_selector,
    parse_shard,
)
from superloop_ops.errors import InvalidSpecError
from superloop_ops.handlers.context import OperatorContext, owns_intent_loop, owns_loop, runs_fleet_kinds
from superloop_ops.k8s.edge import GROUP
from superloop_ops.metrics import build_metrics
from superloop_ops.settings import Settings, fetch_settings


def test_parse_shard() -> None:
    assert parse_shard("") == Shard(0, 1)
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ("4/4", "x/2", "1", "-1/2", "1/0"):
        with pytest.raises(InvalidSpecError):
            parse_shard(bad)
    assert fetch_settings({"SUPERLOOP_SHARD": "2/3"}).shard == Shard(2, 3)


def test_every_loop_has_exactly_one_shard_and_they_are_spread() -> None:
    names = [f"loop-{n}" for n in range(3000)]
    shards = [Shard(i, 3) for i in range(3)]
    for name in names:
        assert sum(shard.owns("team-a", name) for shard in shards) == 1
    spread = Counter(compute_shard_of("team-a", name, None, 3) for name in names)
    assert min(spread.values()) > 900


def test_the_label_pins_a_loop_and_an_invalid_label_is_ignored() -> None:
    assert compute_shard_of("ns", "a", {SHARD_LABEL: "2"}, 3) == 2
    hashed = compute_shard_of("ns", "a", None, 3)
    assert compute_shard_of("ns", "a", {SHARD_LABEL: "7"}, 3) == hashed
    assert compute_shard_of("ns", "a", {SHARD_LABEL: "x"}, 3) == hashed
    assert Shard(0, 1).owns("ns", "a", {SHARD_LABEL: "2"})


def _memo(shard: str) -> types.SimpleNamespace:
    ctx = OperatorContext(
        settings=Settings(shard=parse_shard(shard)),
        edge=None,
        clock=None,
        metrics=build_metrics(),  # type: ignore[arg-type]
    )
    return types.SimpleNamespace(operator=ctx)


def test_kopf_filters_route_loops_intents_and_fleet_kinds() -> None:
    loop = {"metadata": {"namespace": "ns", "name": "a"}}
    owner = compute_shard_of("ns", "a", None, 2)
    intent = {"metadata": {"namespace": "ns", "name": "i1"}, "spec": {"loopRef": {"name": "a"}}}
    for index in (0, 1):
        memo = _memo(f"{index}/2")
        assert owns_loop(loop, memo) is (index == owner)
        assert owns_intent_loop(intent, memo) is (index == owner)
        assert runs_fleet_kinds(memo) is (index == 0)
    unsharded = _memo("")
    assert owns_loop(loop, unsharded)
    assert runs_fleet_kinds(unsharded)
    assert owns_loop(loop, types.SimpleNamespace())  # before startup: everything


def test_each_shard_keeps_kopf_bookkeeping_and_finalizer_under_its_own_prefix() -> None:
    import kopf

    from superloop_ops.main import configure_persistence

    def prefixes(shard: Shard) -> tuple[str, str, str]:
        settings = kopf.OperatorSettings()
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
        configure_persistence(settings, shard)
        progress = settings.persistence.progress_storage
        diffbase = settings.persistence.diffbase_storage
        assert isinstance(progress, kopf.AnnotationsProgressStorage)
        assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
        return progress.prefix, diffbase.prefix, settings.persistence.finalizer

    assert prefixes(Shard()) == (
        "kopf.zalando.org",
        "kopf.zalando.org",
        "kopf.zalando.org/KopfFinalizerMarker",
    )
    assert prefixes(Shard(1, 2)) == (
        "shard-1.ops.superloop.dev",
        "shard-1.ops.superloop.dev",
        "shard-1.ops.superloop.dev/KopfFinalizerMarker",
    )


def test_a_non_ascii_digit_label_is_ignored_not_a_crash() -> None:
    """``"²".isdigit()`` holds but ``int("²")`` raises: the kopf filter raised on such a Loop."""
    hashed = compute_shard_of("ns", "a", None, 3)
    assert compute_shard_of("ns", "a", {SHARD_LABEL: "²"}, 3) == hashed
    assert Shard(hashed, 3).owns("ns", "a", {SHARD_LABEL: "²"})


def test_only_shards_other_than_zero_watch_with_a_label_selector() -> None:
    assert compute_watch_selector(Shard(0, 1)) is None
    assert compute_watch_selector(Shard(0, 3)) is None  # shard 0 labels what has no label yet
    assert compute_watch_selector(Shard(2, 3)) == f"{SHARD_LABEL}=2"


def test_the_shard_label_an_object_must_get() -> None:
    hashed = str(compute_shard_of("ns", "a", None, 3))
    assert compute_shard_label("ns", "a", None, 1) is None  # one shard: no labels at all
    assert compute_shard_label("ns", "a", None, 3) == hashed
    assert compute_shard_label("ns", "a", {SHARD_LABEL: hashed}, 3) is None
    assert compute_shard_label("ns", "a", {SHARD_LABEL: "2"}, 3) in (None, "2")  # pinned stays
    assert compute_shard_label("ns", "a", {SHARD_LABEL: "02"}, 3) == "2"  # canonical for the selector
    for unusable in ("7", "x", "²", ""):
        assert compute_shard_label("ns", "a", {SHARD_LABEL: unusable}, 3) == hashed
    # a HandoffIntent without a label follows its Loop's label, else its Loop's hash
    assert compute_shard_label("ns", "a", None, 3, owner="1") == "1"
    assert compute_shard_label("ns", "a", None, 3, owner="9") == hashed
    assert compute_shard_label("ns", "a", {SHARD_LABEL: "0"}, 3, owner="1") is None  # its own label pins it
    # every shard agrees on the owner once the label is set
    for name in (f"loop-{n}" for n in range(200)):
        label = compute_shard_label("ns", name, None, 4)
        assert label is not None
        owners = [i for i in range(4) if Shard(i, 4).owns("ns", name, {SHARD_LABEL: label})]
        assert owners == [compute_shard_of("ns", name, None, 4)]


def test_startup_gives_kopf_the_selector_of_loops_and_intents() -> None:
    import kopf
    from kopf._cogs.structs.references import Resource

    from superloop_ops.main import configure_watch_selectors

    def selectors(shard: Shard) -> dict[str, list[str]]:
        settings = kopf.OperatorSettings()
        configure_watch_selectors(settings, shard)
        return {
            plural: list(settings.watching.label_selectors.collect(Resource(GROUP, "v1alpha1", plural)))
            for plural in ("loops", "handoffintents", "fleets")
        }

    assert selectors(Shard(1, 2)) == {
        "loops": [f"{SHARD_LABEL}=1"],
        "handoffintents": [f"{SHARD_LABEL}=1"],
        "fleets": [],
    }
    assert selectors(Shard(0, 2)) == {"loops": [], "handoffintents": [], "fleets": []}
