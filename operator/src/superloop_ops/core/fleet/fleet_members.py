"""A Fleet's members, from what the Loop watch has seen (issue 12: Fleets of any size).

The operator keeps one ``LoopMember`` per Loop, built by ``build_loop_member`` from each watch
event (a kopf index), so a fleet pass reads its members from memory instead of LISTing the
namespace. A member keeps only what a fleet pass reads: the name, labels, ownership, the spec's
transport, service and suspend, and the outcome of the Loop's last pass
(``fleet_resource.compute_loop_outcome``), not the Loop's body. Members compare equal when
nothing a fleet pass reads changed, which is how a pass tells that it has nothing new to do.

Membership is the Fleet's explicit ``loops`` plus the Loops its ``selector`` matches
(``resolve_entries``): a selected Loop becomes a ``loopRef`` entry with the Loop's own
``spec.loopId``; an explicit entry with the same loop id wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from superloop_ops.core.common.open_remediation import find_open_trace
from superloop_ops.core.fleet.fleet_resource import compute_loop_outcome
from superloop_ops.core.fleet.owned_names import SPEC_HASH_ANNOTATION
from superloop_ops.core.fleet.rollup import LoopRunOutcome
from superloop_ops.errors import InvalidSpecError
from superloop_ops.models.common import LocalObjectRef
from superloop_ops.models.fleet import FleetLoopEntry, FleetSpec, LabelSelector
from superloop_ops.models.loop import Loop, ServiceSettings

__all__ = ["LoopMember", "build_loop_member", "collect_members", "matches_selector", "resolve_entries"]


@dataclasses.dataclass(frozen=True)
class LoopMember:
    """What a fleet pass reads about one Loop (``loop_id`` is None when its spec does not parse)."""

    name: str
    uid: str
    loop_id: str | None
    labels: tuple[tuple[str, str], ...]
    owner_uids: tuple[str, ...]
    spec_hash: str | None
    suspended: bool
    transport: str
    service: ServiceSettings | None
    has_status: bool
    outcome: LoopRunOutcome | None
    last_reconcile_at: str | None = None
    """When the Loop's status was last written by a pass (an outcome newer than it is unobserved)."""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def build_loop_member(body: Mapping[str, Any]) -> LoopMember:
    """The member a Loop body stands for (pure; a spec that does not parse gives ``loop_id=None``)."""
    meta = _mapping(body.get("metadata"))
    status = body.get("status")
    owners = tuple(
        str(ref.get("uid"))
        for ref in meta.get("ownerReferences") or []
        if isinstance(ref, Mapping) and ref.get("kind") == "Fleet"
    )
    try:
        spec = Loop.from_body({key: value for key, value in body.items() if key != "status"}).spec
    except InvalidSpecError:
        spec = None
    return LoopMember(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        loop_id=spec.loop_id if spec is not None else None,
        labels=tuple(sorted((str(k), str(v)) for k, v in _mapping(meta.get("labels")).items())),
        owner_uids=owners,
        spec_hash=_mapping(meta.get("annotations")).get(SPEC_HASH_ANNOTATION),
        suspended=bool(spec.suspend) if spec is not None else False,
        transport=spec.transport if spec is not None else "local",
        service=spec.service if spec is not None else None,
        has_status=isinstance(status, Mapping),
        outcome=_outcome_with_trace(status if isinstance(status, Mapping) else None),
        last_reconcile_at=_text(_mapping(status).get("lastReconcileAt")),
    )


def _outcome_with_trace(status: Mapping[str, Any] | None) -> LoopRunOutcome | None:
    """The Loop's outcome, carrying its open remediation's trace id (issue 15) when it has one."""
    outcome = compute_loop_outcome(status)
    trace = find_open_trace(status)
    return dataclasses.replace(outcome, trace_id=trace) if outcome is not None and trace else outcome


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def collect_members(members: Iterable[LoopMember]) -> dict[str, LoopMember]:
    """By Loop name (the watch's index holds one member per Loop)."""
    return {member.name: member for member in members}


def _requirement_holds(labels: Mapping[str, str], key: str, operator: str, values: list[str]) -> bool:
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator == "In":
        return key in labels and labels[key] in values
    return key not in labels or labels[key] not in values  # NotIn


def matches_selector(selector: LabelSelector, labels: Iterable[tuple[str, str]]) -> bool:
    """Kubernetes label-selector semantics: every matchLabels pair and every expression hold."""
    have = dict(labels)
    if any(have.get(key) != value for key, value in selector.match_labels.items()):
        return False
    return all(
        _requirement_holds(have, req.key, req.operator, req.values) for req in selector.match_expressions
    )


def resolve_entries(spec: FleetSpec, members: Mapping[str, LoopMember]) -> list[FleetLoopEntry]:
    """The Fleet's registry entries: the explicit list, then the selected Loops by name.

    A selected Loop whose spec does not parse, or whose loop id an earlier entry already has,
    is left out.
    """
    entries = list(spec.loops)
    if spec.selector is None:
        return entries
    seen = {entry.loop_id for entry in entries}
    explicit_names = {entry.loop_ref.name for entry in entries if entry.loop_ref is not None}
    for name in sorted(members):
        member = members[name]
        if member.loop_id is None or member.loop_id in seen or name in explicit_names:
            continue
        if not matches_selector(spec.selector, member.labels):
            continue
        seen.add(member.loop_id)
        entries.append(
            FleetLoopEntry.model_construct(
                loop_id=member.loop_id,
                enabled=True,
                loop_ref=LocalObjectRef.model_construct(name=name),
                transport=None,
                source=None,
                sprite=None,
                service=None,
                metadata={},
            )
        )
    return entries
