"""``superloop-ops trail <loop|intent|trace-id>``: one remediation's timeline, in order (issue 15).

Reads the journal under each ``--state-dir`` (``journal.trail_files``: the operator's namespace
state directory, or a repository) and, with ``-n/--namespace`` (plus ``--kubeconfig`` and
``--context`` as kubectl takes them), the API: the namespace's Loops, HandoffIntents and Events,
as ``kubectl superloop trail`` reads them. The pure ``core.handoff.remediation_trail`` resolves
the target to a trace id and assembles the timeline. ``-o json`` prints the document for tools;
the default is one line per step. Exit 1 when no step carries the trace id.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from superloop_ops.cli import kubectl_trail
from superloop_ops.errors import ContractError, OperatorError
from superloop_ops.journal import trail_files

__all__ = ["add_arguments", "run"]


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


def _read_objects(args: argparse.Namespace) -> kubectl_trail.TrailObjects:
    if not args.namespace:
        return [], [], []
    from superloop_ops.cli.kubectl_cluster import Connection, PluginCluster

    conn = Connection(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace)
    try:
        return kubectl_trail.read_trail_objects(PluginCluster(conn))
    except OperatorError as exc:
        raise ContractError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    journal = trail_files.read_journal(list(args.state_dir))
    trail = kubectl_trail.build_trail(args.target, journal, _read_objects(args))
    return kubectl_trail.print_trail(trail, args.output)
