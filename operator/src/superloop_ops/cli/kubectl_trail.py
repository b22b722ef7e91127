"""``kubectl superloop trail <loop|intent|trace-id>``: one remediation's timeline from the API.

The API holds the Loop's ``status.remediation`` (when it opened and resolved), the HandoffIntents
(``spec.traceId``, the approval, the outcome) and the Events whose message ends with
``[trace <id>]``. Events expire (an hour by default) and the Fleet withdraws intents whose
candidate is gone, so the operator's journal holds the complete trail: ``--state-dir`` adds it
when it is reachable (the operator's state volume mounted, or a copy), as ``superloop-ops trail``
reads it. ``-o json`` or ``-o yaml`` prints the document for tools.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from superloop_ops.cli.kubectl_cluster import PluginCluster
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.handoff import remediation_trail
from superloop_ops.journal import trail_files

__all__ = ["TrailObjects", "add_parser", "build_trail", "read_trail_objects", "run"]

TrailObjects = tuple[list[JsonObject], list[JsonObject], list[JsonObject]]


def add_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    trail = sub.add_parser(
        "trail",
        parents=list(parents),
        help="one remediation's timeline (a Loop, a HandoffIntent or a trace id)",
    )
    trail.add_argument("target", help="a Loop (name or loopId), a HandoffIntent name, or a trace id")
    trail.add_argument(
        "--state-dir", action="append", default=[], type=Path, metavar="DIR",
        help="also read the operator's journal here (the chart's state volume; repeatable)",
    )


def _event_record(event: Any) -> JsonObject:
    moment = event.last_timestamp or event.first_timestamp or event.event_time
    return {
        "object": f"{event.involved_object.kind}/{event.involved_object.name}",
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "timestamp": format_ts(moment) if isinstance(moment, dt.datetime) else None,
    }


def read_trail_objects(cluster: PluginCluster) -> TrailObjects:
    """(Loops, HandoffIntents, Events) of the cluster's namespace."""
    loops = cluster.list("loops")
    intents = cluster.list("handoffintents")
    return loops, intents, [_event_record(e) for e in cluster.list_events()]


def _by_name_and_loop_id(loops: list[JsonObject]) -> dict[str, JsonObject]:
    out: dict[str, JsonObject] = {}
    for body in loops:
        out[str((body.get("metadata") or {}).get("name"))] = body
        loop_id = (body.get("spec") or {}).get("loopId")
        if loop_id:
            out.setdefault(str(loop_id), body)
    return out


def build_trail(target: str, journal: dict[str, list[Any]], objects: TrailObjects) -> JsonObject:
    """Resolve ``target`` to its trace id, then assemble the trail from the journal and the objects."""
    loops, intents, events = objects
    trace_id = remediation_trail.resolve_trace_id(
        target,
        intents_by_name={str((b.get("metadata") or {}).get("name")): b for b in intents},
        loops=_by_name_and_loop_id(loops),
        remediations=journal.get("remediations") or [],
        handoff_rows=journal.get("handoff_intents") or [],
    )
    inputs = remediation_trail.TrailInputs(journal=journal, loops=loops, intents=intents, events=events)
    return remediation_trail.assemble_trail(trace_id, inputs)


def print_trail(trail: JsonObject, output: str | None) -> int:
    """Text (one line per step), JSON or YAML; exit 1 when no step carries the trace id."""
    if output == "json":
        print(json.dumps(trail, separators=(",", ":")))
    elif output == "yaml":
        print(yaml.safe_dump(trail, sort_keys=False).rstrip())
    else:
        print(remediation_trail.render_trail_text(trail))
    return 0 if trail["steps"] else 1


def run(cluster: PluginCluster, args: argparse.Namespace) -> int:
    journal = trail_files.read_journal(list(args.state_dir))
    return print_trail(build_trail(args.target, journal, read_trail_objects(cluster)), args.output)
