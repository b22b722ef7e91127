"""The plugin's verbs on objects: approve, reject, decline, suspend, resume, reconcile-now, replay,
wait.

Approvals carry the requesting user's name (SelfSubjectReview), which the chart's admission
policy checks. ``reject`` withdraws a waiting HandoffIntent (deletes it: it never ran, and a
Fleet proposes it again only if the candidate persists past the policy's dedupe window).
``decline`` records that a person decided against a waiting intent without withdrawing it
(``ops.superloop.dev/declined``, ``-by``, ``-at``, attributable like an approval): shadow
autonomy counts it as ``rejected``, where a withdrawn intent can only count as ``lapsed``.
``wait`` polls until an intent reaches the asked phase, and exits 1 on a timeout or an outcome
that can no longer become the asked one, as ``kubectl wait`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from superloop_ops.cli.kubectl_get import resolve_kind
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.fleet.shadow_agreement import (
    DECLINED_AT_ANNOTATION,
    DECLINED_BY_ANNOTATION,
)
from superloop_ops.core.handoff.handoff_intent_resource import (
    ANNOTATION_APPROVED,
    ANNOTATION_APPROVED_AT,
    ANNOTATION_APPROVED_BY,
    ANNOTATION_NOTE,
    EXECUTED,
    EXECUTED_UNCONFIRMED,
    EXECUTION_AMBIGUOUS,
    EXECUTION_FAILED,
    PENDING,
)
from superloop_ops.core.loop.loop_resource import (
    ANNOTATION_REPLAY,
    ANNOTATION_REPLAY_REQUESTED_AT,
    REPLAY_FROM_START,
)
from superloop_ops.errors import OperatorError
from superloop_ops.models.handoff_intent import DECLINED_ANNOTATION

__all__ = ["ANNOTATION_RECONCILE_REQUESTED_AT", "add_parsers", "parse_duration", "run", "wait_outcome"]

ANNOTATION_RECONCILE_REQUESTED_AT = "ops.superloop.dev/reconcile-requested-at"
_FINAL = frozenset({EXECUTED, EXECUTED_UNCONFIRMED, EXECUTION_AMBIGUOUS, EXECUTION_FAILED})
_SUSPENDABLE = ("Loop", "Fleet")


class _Cluster(Protocol):
    namespace: str

    def get(self, plural: str, name: str) -> JsonObject: ...

    def annotate(self, plural: str, name: str, annotations: Mapping[str, str | None]) -> None: ...

    def patch(self, plural: str, name: str, body: Mapping[str, Any]) -> None: ...

    def delete(self, plural: str, name: str) -> None: ...

    def username(self) -> str: ...


def parse_duration(text: str) -> float:
    """kubectl's ``--timeout`` form: ``90s``, ``5m``, ``1h``, ``1m30s``, or plain seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)?", text.strip())
    joined = "".join(n + (u or "") for n, u in parts)
    if not parts or joined != text.strip():
        raise OperatorError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h)")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "": 1.0}
    return sum(float(n) * scale[u] for n, u in parts)


def add_parsers(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    common = list(parents)
    approve = sub.add_parser("approve", parents=common, help="approve a HandoffIntent as the current user")
    approve.add_argument("intent")
    approve.add_argument("--note", default=None)
    reject = sub.add_parser("reject", parents=common, help="withdraw a waiting HandoffIntent (it never runs)")
    reject.add_argument("intent")
    decline = sub.add_parser(
        "decline", parents=common, help="decide against a waiting HandoffIntent as yourself (it stays unrun)"
    )
    decline.add_argument("intent")
    for verb, text in (("suspend", "stop reconciling"), ("resume", "reconcile again")):
        cmd = sub.add_parser(verb, parents=common, help=f"{text} a Loop or Fleet (spec.suspend)")
        cmd.add_argument("target", help="loop/<name>, fleet/<name>, or a Loop name")
    now = sub.add_parser("reconcile-now", parents=common, help="ask for a Loop pass now (annotation)")
    now.add_argument("loop")
    replay = sub.add_parser("replay", parents=common, help="replay a Loop's events from the start (one-shot)")
    replay.add_argument("loop")
    wait = sub.add_parser(
        "wait",
        parents=common,
        help="wait until a HandoffIntent is executed (exit 1 on timeout or another outcome)",
    )
    wait.add_argument("intent")
    wait.add_argument(
        "--for",
        dest="wait_for",
        default="executed",
        help="a phase: executed (default), executed_unconfirmed, ...",
    )
    wait.add_argument("--timeout", default="30s", help="give up after this long (30s, 5m)")


def _target(text: str) -> tuple[str, str]:
    kind, _, name = text.rpartition("/")
    info = resolve_kind(kind or "loop")
    if info.kind not in _SUSPENDABLE:
        raise OperatorError(f"only loops and fleets can be suspended, not {info.plural}")
    return info.plural, name


def wait_outcome(status: Mapping[str, Any], wanted: str) -> bool | None:
    """True when the intent is in the wanted phase, False when it never will be, None meanwhile."""
    phase = status.get("phase") or PENDING
    if phase == wanted:
        return True
    if phase in _FINAL:
        return False
    return None


def _wait(cluster: _Cluster, args: argparse.Namespace, sleep: Callable[[float], None]) -> int:
    deadline = time.monotonic() + parse_duration(args.timeout)
    while True:
        status = cluster.get("handoffintents", args.intent).get("status") or {}
        outcome = wait_outcome(status, args.wait_for)
        if outcome is True:
            print(f"handoffintent.ops.superloop.dev/{args.intent} condition met")
            return 0
        if outcome is False:
            print(f"error: handoffintent/{args.intent} ended {status.get('phase')}, not {args.wait_for}")
            return 1
        if time.monotonic() >= deadline:
            print(f"error: timed out waiting for the condition on handoffintents/{args.intent}")
            return 1
        sleep(1.0)


def run(cluster: _Cluster, args: argparse.Namespace, now: dt.datetime, sleep: Callable[[float], None]) -> int:
    command = args.command
    if command == "wait":
        return _wait(cluster, args, sleep)
    if command == "approve":
        user = cluster.username()
        annotations: dict[str, str | None] = {
            ANNOTATION_APPROVED: "true",
            ANNOTATION_APPROVED_BY: user,
            ANNOTATION_APPROVED_AT: format_ts(now),
        }
        if args.note is not None:
            annotations[ANNOTATION_NOTE] = args.note
        cluster.annotate("handoffintents", args.intent, annotations)
        print(f"handoffintent/{args.intent} approved by {user}")
        return 0
    if command == "reject":
        return _reject(cluster, args.intent)
    if command == "decline":
        return _decline(cluster, args.intent, now)
    if command in ("suspend", "resume"):
        plural, name = _target(args.target)
        cluster.patch(plural, name, {"spec": {"suspend": command == "suspend"}})
        print(f"{plural[:-1]}/{name} {'suspended' if command == 'suspend' else 'resumed'}")
        return 0
    if command == "reconcile-now":
        cluster.annotate("loops", args.loop, {ANNOTATION_RECONCILE_REQUESTED_AT: format_ts(now)})
        print(f"loop/{args.loop} reconcile requested")
        return 0
    cluster.annotate(
        "loops",
        args.loop,
        {ANNOTATION_REPLAY: REPLAY_FROM_START, ANNOTATION_REPLAY_REQUESTED_AT: format_ts(now)},
    )
    print(f"loop/{args.loop} replay from start requested")
    return 0


def _require_waiting(cluster: _Cluster, name: str, verb: str) -> None:
    status = cluster.get("handoffintents", name).get("status") or {}
    phase = status.get("phase") or PENDING
    if phase != PENDING:
        raise OperatorError(f"handoffintent/{name} is {phase}: only a waiting intent can be {verb}")


def _decline(cluster: _Cluster, name: str, now: dt.datetime) -> int:
    _require_waiting(cluster, name, "declined")
    user = cluster.username()
    cluster.annotate(
        "handoffintents",
        name,
        {DECLINED_ANNOTATION: "true", DECLINED_BY_ANNOTATION: user, DECLINED_AT_ANNOTATION: format_ts(now)},
    )
    print(f"handoffintent/{name} declined by {user}")
    return 0


def _reject(cluster: _Cluster, name: str) -> int:
    _require_waiting(cluster, name, "rejected")
    user = cluster.username()
    cluster.delete("handoffintents", name)
    print(f"handoffintent/{name} rejected by {user} (withdrawn; it never ran)")
    return 0
