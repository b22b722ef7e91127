"""``superloop-ops trail <loop|intent|trace-id>``: one remediation's timeline, in order (issue 15).

Reads the journal under each ``--state-dir`` (the operator's namespace state directory, or a
repository: every ``.superloop/ops-manager/<loop>/`` and ``.../fleet/<name>/telemetry/trail.jsonl``
found there or one level below) and, with ``-n/--namespace`` (plus ``--kubeconfig``/``--context``
as kubectl takes them), the API: the namespace's Loops, HandoffIntents and Events. The pure
``core.handoff.remediation_trail`` resolves the target to a trace id and assembles the timeline.
``-o json`` prints the document for tools; the default is one line per step.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from superloop_ops.cli._common import emit
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.handoff import remediation_trail
from superloop_ops.errors import ContractError, OperatorError
from superloop_ops.journal import files

__all__ = ["add_arguments", "run"]

# journal file kind -> path below a loop's ops directory
_LOOP_FILES: Mapping[str, str] = {
    "remediations": "telemetry/remediations.jsonl",
    "escalations": "escalations.jsonl",
    "alert_dispatch": "telemetry/alerts.jsonl",
    "handoff_intents": "telemetry/handoff-intents.jsonl",
    "control": "intents.jsonl",
    "reconcile": "telemetry/reconcile.jsonl",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a Loop (name or loopId), a HandoffIntent name, or a trace id")
    parser.add_argument(
        "--state-dir", action="append", default=[], type=Path,
        help="journal root to read (repeatable): the operator's namespace state directory or a repository",
    )  # fmt: skip
    parser.add_argument("-n", "--namespace", default=None, help="read Loops, HandoffIntents and Events here")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")


def _ops_roots(state_dir: Path) -> Iterator[Path]:
    for base in (state_dir, *sorted(p for p in state_dir.glob("*") if p.is_dir())):
        root = base / ".superloop" / "ops-manager"
        if root.is_dir():
            yield root


def read_journal(state_dirs: list[Path]) -> dict[str, list[Any]]:
    """Every journal file kind the trail reads, rows from all loops and fleets under the roots."""
    journal: dict[str, list[Any]] = {kind: [] for kind in (*_LOOP_FILES, "fleet_trail")}
    for state_dir in state_dirs:
        if not state_dir.is_dir():
            raise ContractError(f"--state-dir is not a directory: {state_dir}")
        for root in _ops_roots(state_dir):
            for loop_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "fleet"):
                for kind, relative in _LOOP_FILES.items():
                    journal[kind].extend(files.read_jsonl(loop_dir / relative))
            for trail_file in sorted(root.glob("fleet/*/telemetry/trail.jsonl")):
                journal["fleet_trail"].extend(files.read_jsonl(trail_file))
    return journal


def _event_record(event: Any) -> JsonObject:
    moment = event.last_timestamp or event.first_timestamp or event.event_time
    return {
        "object": f"{event.involved_object.kind}/{event.involved_object.name}",
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "timestamp": format_ts(moment) if isinstance(moment, dt.datetime) else None,
    }


def read_api(args: argparse.Namespace) -> tuple[list[JsonObject], list[JsonObject], list[JsonObject]]:
    """(Loops, HandoffIntents, Events) of the namespace, or nothing without ``-n``."""
    if not args.namespace:
        return [], [], []
    from kubernetes import client

    from superloop_ops.k8s.edge import KubernetesEdge, ObjectRef, build_api_client, map_api_exception

    api = build_api_client(args.kubeconfig, args.context)
    edge = KubernetesEdge(api)
    loops = edge.list_objects(ObjectRef(kind="Loop", plural="loops", namespace=args.namespace, name=""))
    intents = edge.list_objects(
        ObjectRef(kind="HandoffIntent", plural="handoffintents", namespace=args.namespace, name="")
    )
    try:
        listing = client.CoreV1Api(api).list_namespaced_event(args.namespace)
    except Exception as exc:  # mapped like every other API call
        raise map_api_exception(exc, f"Events in {args.namespace}") from exc
    return loops, intents, [_event_record(e) for e in listing.items or []]


def _by_name_and_loop_id(loops: list[JsonObject]) -> dict[str, JsonObject]:
    out: dict[str, JsonObject] = {}
    for body in loops:
        out[str((body.get("metadata") or {}).get("name"))] = body
        loop_id = (body.get("spec") or {}).get("loopId")
        if loop_id:
            out.setdefault(str(loop_id), body)
    return out


def run(args: argparse.Namespace) -> int:
    journal = read_journal(list(args.state_dir))
    try:
        loops, intents, events = read_api(args)
    except OperatorError as exc:
        raise ContractError(str(exc)) from exc
    trace_id = remediation_trail.resolve_trace_id(
        args.target,
        intents_by_name={str((b.get("metadata") or {}).get("name")): b for b in intents},
        loops=_by_name_and_loop_id(loops),
        remediations=journal["remediations"],
        handoff_rows=journal["handoff_intents"],
    )
    trail = remediation_trail.assemble_trail(
        trace_id, remediation_trail.TrailInputs(journal=journal, intents=intents, events=events)
    )
    if args.output == "json":
        emit(trail, pretty=False)
    else:
        print(remediation_trail.render_trail_text(trail))
    return 0 if trail["steps"] else 1
