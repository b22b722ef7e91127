"""Fleet membership (issue 12): the member a Loop body stands for, label selectors, the entries a
Fleet's list and selector resolve to, and the Fleet model's membership rules."""

from __future__ import annotations

from typing import Any

import pytest

from superloop_ops.core.fleet import fleet_members
from superloop_ops.errors import InvalidSpecError
from superloop_ops.models.fleet import Fleet, FleetSpec, LabelSelector


def _loop(name: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ops.superloop.dev/v1alpha1",
        "kind": "Loop",
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels},
        "spec": {"loopId": f"id-{name}", "transport": "local", "source": {"pvc": {"claimName": "c"}}, **spec},
    }


def _selector(**raw: Any) -> LabelSelector:
    return LabelSelector.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "labels", "expected"),
    [
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]}]},
            {"tier": "gold"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["canary"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["canary"]}]},
            {"tier": "canary"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": ""}, False),
        ({}, {"anything": "at-all"}, True),
    ],
)
def test_label_selector_semantics(raw: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert fleet_members.matches_selector(_selector(**raw), labels.items()) is expected


def test_member_keeps_what_a_fleet_pass_reads_and_compares_equal_when_that_did_not_change() -> None:
    body = _loop("a", {"team": "a"})
    body["status"] = {
        "healthStatus": "healthy",
        "lifecycle": "running",
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconcileSucceeded"}],
        "cursor": {"eventLineCount": 10},
    }
    member = fleet_members.build_loop_member(body)
    assert (member.name, member.loop_id, member.transport, member.suspended) == ("a", "id-a", "local", False)
    assert member.outcome is not None
    assert member.outcome.exit_code == 0
    body["status"]["cursor"] = {"eventLineCount": 11}  # an appended event: nothing the fleet reads
    assert fleet_members.build_loop_member(body) == member
    body["status"]["healthStatus"] = "degraded"
    assert fleet_members.build_loop_member(body) != member


def test_member_of_a_loop_whose_spec_does_not_parse_has_no_loop_id() -> None:
    body = _loop("bad", {"team": "a"})
    body["spec"]["transport"] = "carrier-pigeon"
    member = fleet_members.build_loop_member(body)
    assert member.loop_id is None
    assert member.outcome is None


def test_entries_are_the_list_then_the_selected_loops_by_name_and_the_list_wins_a_loop_id() -> None:
    spec = FleetSpec.model_validate(
        {
            "loops": [{"loopId": "id-b", "loopRef": {"name": "b"}}],
            "selector": {"matchLabels": {"team": "a"}},
        }
    )
    members = fleet_members.collect_members(
        fleet_members.build_loop_member(_loop(name, labels))
        for name, labels in (
            ("c", {"team": "a"}),
            ("b", {"team": "a"}),
            ("a", {"team": "a"}),
            ("z", {"team": "z"}),
        )
    )
    entries = fleet_members.resolve_entries(spec, members)
    assert [(e.loop_id, e.loop_ref.name if e.loop_ref else None) for e in entries] == [
        ("id-b", "b"),
        ("id-a", "a"),
        ("id-c", "c"),
    ]


def _fleet(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "ops.superloop.dev/v1alpha1",
        "kind": "Fleet",
        "metadata": {"name": "f"},
        "spec": spec,
    }


def test_fleet_model_takes_a_selector_alone_and_refuses_a_fleet_with_no_members() -> None:
    fleet = Fleet.from_body(_fleet({"selector": {"matchLabels": {"team": "a"}}}))
    assert fleet.spec.loops == []
    with pytest.raises(InvalidSpecError, match=r"spec\.loops or spec\.selector must name"):
        Fleet.from_body(_fleet({}))
    with pytest.raises(InvalidSpecError):
        Fleet.from_body(
            _fleet({"loops": [{"loopId": f"l{i}", "loopRef": {"name": f"l{i}"}} for i in range(501)]})
        )
