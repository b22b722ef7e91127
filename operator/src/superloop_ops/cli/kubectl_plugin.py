"""``kubectl-superloop`` (``kubectl superloop``): the operator's objects as kubectl users work.

Commands: ``get`` (the five kinds as ``kubectl get`` shows them, ``-w`` to watch), ``status``
(the runbook's status snapshot of a Loop; ``--exit-code`` makes the exit code follow health),
``intents``, ``approve`` / ``reject`` / ``decline``, ``wait <intent> --for=executed``, ``suspend`` /
``resume``, ``reconcile-now``, ``replay``, ``fleet``, ``suppressions``, ``drill record``, ``completion``.

kubectl's flags work anywhere on the line (``kubectl superloop intents -n team-a``):
``--kubeconfig``, ``--context``, ``-n``, ``-A``, ``-l``, ``--as``, ``--as-group``, ``-o
json|yaml|wide|name``. Errors print one line (the API server's own message for a 403 or 404),
never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from superloop_ops import __version__
from superloop_ops.cli import (
    kubectl_actions,
    kubectl_completion,
    kubectl_drill,
    kubectl_fleet,
    kubectl_get,
    kubectl_suppressions,
)
from superloop_ops.cli.kubectl_cluster import Connection, PluginCluster
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.loop.artifacts import jq_get
from superloop_ops.errors import OperatorError

__all__ = ["EXIT_CODES", "build_parser", "build_status_snapshot", "complete_main", "health_exit_code", "main"]

#: ``status --exit-code``: what a script can branch on.
EXIT_CODES = {"healthy": 0, "error": 1, "usage": 2, "degraded": 3, "critical": 4, "not_ready": 5}
_GLOBALS: dict[str, Any] = {
    "kubeconfig": None,
    "context": None,
    "namespace": None,
    "all_namespaces": False,
    "selector": None,
    "as_user": None,
    "as_groups": [],
    "output": None,
}
_EPILOG = """examples:
  kubectl superloop get loops -A                  Ready, status, health and reasons of every Loop
  kubectl superloop status demo-loop -n team-a    the runbook's status snapshot
  kubectl superloop approve cancel-x -n team-a    approve a HandoffIntent as yourself
  kubectl superloop wait cancel-x --for=executed --timeout=5m

kubectl's flags (-n, -A, -l, -o, --context, --as, --kubeconfig) work before or after the command.
exit codes: 0 success, 1 error (API, timeout), 2 usage;
status --exit-code: 0 healthy, 3 degraded, 4 critical, 5 not Ready (reconcile failing)"""


def _global_flags() -> argparse.ArgumentParser:
    """kubectl's flags, accepted before or after the command (defaults filled in afterwards)."""
    flags = argparse.ArgumentParser(add_help=False)
    keep = argparse.SUPPRESS
    flags.add_argument("--kubeconfig", default=keep, help="path to the kubeconfig file")
    flags.add_argument("--context", default=keep, help="kubeconfig context to use")
    flags.add_argument("-n", "--namespace", default=keep, help="namespace (default: the context's)")
    flags.add_argument(
        "-A", "--all-namespaces", action="store_true", default=keep, help="list in every namespace"
    )
    flags.add_argument("-l", "--selector", default=keep, help="label selector (e.g. team=a)")
    flags.add_argument("--as", dest="as_user", metavar="USER", default=keep, help="user to impersonate")
    flags.add_argument(
        "--as-group",
        dest="as_groups",
        metavar="GROUP",
        action="append",
        default=keep,
        help="group to impersonate",
    )
    flags.add_argument("-o", "--output", choices=kubectl_get.OUTPUTS, default=keep, help="output format")
    return flags


def build_parser() -> argparse.ArgumentParser:
    flags = _global_flags()
    parser = argparse.ArgumentParser(
        prog="kubectl superloop",
        description="Supervise superloop-ops Loops, Fleets and HandoffIntents from kubectl.",
        parents=[flags],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kubectl-superloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    kubectl_get.add_parser(sub, [flags])
    status = sub.add_parser("status", parents=[flags], help="print the status snapshot of a Loop")
    status.add_argument("loop")
    status.add_argument("--compact", action="store_true", help="one-line JSON")
    status.add_argument("--exit-code", action="store_true", help="exit 3 degraded, 4 critical, 5 not Ready")
    intents = sub.add_parser("intents", parents=[flags], help="list HandoffIntents with their phase")
    intents.add_argument("--loop", default=None, help="only intents for this Loop")
    kubectl_actions.add_parsers(sub, [flags])
    kubectl_fleet.add_parser(sub, [flags])
    kubectl_suppressions.add_parser(sub, [flags])
    kubectl_drill.add_parser(sub, [flags])
    kubectl_completion.add_parser(sub)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name, default in _GLOBALS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def build_status_snapshot(loop: Mapping[str, Any], now: dt.datetime) -> JsonObject:
    """The runbook's status snapshot (tuning spec §6.3 order) rebuilt from a Loop's status."""
    status = loop.get("status") or {}
    meta = loop.get("metadata") or {}
    ready: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    last_ok = ready.get("status") == "True"
    visibility = status.get("visibility")
    trace = jq_get(visibility, "trace") or {}
    snapshot: JsonObject = {
        "schemaVersion": "v1",
        "generatedAt": format_ts(now),
        "source": {
            "namespace": meta.get("namespace"),
            "loop": meta.get("name"),
            "loopId": jq_get(loop, "spec", "loopId"),
        },
        "lifecycle": {
            "state": status.get("lifecycle") or "unknown",
            "confidence": jq_get(status, "state", "transition", "confidence"),
            "runId": jq_get(status, "state", "run", "runId"),
            "iteration": jq_get(status, "state", "run", "iteration"),
        },
        "health": status.get("health")
        or ({"status": status["healthStatus"]} if status.get("healthStatus") else {}),
        "cursor": status.get("cursor") or {"eventLineOffset": 0, "eventLineCount": 0},
        "control": status.get("latestControl")
        or {
            "lastIntent": None,
            "lastStatus": None,
            "lastRequestedBy": None,
            "lastTimestamp": None,
            "lastTraceId": None,
        },
        "reconcile": {
            "lastStatus": None if not ready else ("success" if last_ok else "failed"),
            "lastTimestamp": status.get("lastReconcileAt"),
            "lastTransport": status.get("transport"),
            "lastFailureCode": None if last_ok else jq_get(status, "transportHealth", "lastFailureCode"),
            "lastReason": ready.get("reason"),
            "lastTraceId": status.get("traceId"),
        },
        "visibility": visibility,
        "tuning": status.get("tuning"),
        "drift": status.get("drift"),
        "alerts": status.get("alerts"),
        "traceLinkage": {
            "controlTraceId": trace.get("controlTraceId"),
            "controlInvocationTraceId": trace.get("controlInvocationTraceId"),
            "reconcileTraceId": trace.get("reconcileTraceId"),
            "heartbeatTraceId": trace.get("heartbeatTraceId"),
            "sequenceTraceId": trace.get("sequenceTraceId"),
            "alertTraceId": trace.get("alertTraceId"),
        },
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or []
        ],
    }
    return {key: value for key, value in snapshot.items() if value is not None}


def health_exit_code(loop: Mapping[str, Any]) -> int:
    """``status --exit-code``: not Ready first (the picture is stale), then the health."""
    status = loop.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "False":
        return EXIT_CODES["not_ready"]
    return EXIT_CODES.get(str(status.get("healthStatus") or "healthy"), 0)


def _intent_rows(items: Sequence[Mapping[str, Any]], loop: str | None, all_ns: bool) -> list[list[str]]:
    rows = [(["NAMESPACE"] if all_ns else []) + ["NAME", "LOOP", "INTENT", "PHASE", "APPROVED-BY", "KEY"]]
    for item in sorted(
        items, key=lambda i: (str(jq_get(i, "metadata", "namespace")), str(jq_get(i, "metadata", "name")))
    ):
        if loop and jq_get(item, "spec", "loopRef", "name") != loop:
            continue
        status = item.get("status") or {}
        rows.append(
            ([str(jq_get(item, "metadata", "namespace"))] if all_ns else [])
            + [
                str(jq_get(item, "metadata", "name")),
                str(jq_get(item, "spec", "loopRef", "name") or ""),
                str(jq_get(item, "spec", "intent") or ""),
                str(status.get("phase") or "pending_operator_confirmation"),
                str(status.get("approvedBy") or ""),
                str(status.get("idempotencyKey") or ""),
            ]
        )
    return rows


def _status(cluster: PluginCluster, args: argparse.Namespace, now: dt.datetime) -> int:
    loop = cluster.get("loops", args.loop)
    snapshot = build_status_snapshot(loop, now)
    if args.output == "yaml":
        print(yaml.safe_dump(snapshot, sort_keys=False).rstrip())
    else:
        print(json.dumps(snapshot, separators=(",", ":")) if args.compact else json.dumps(snapshot, indent=2))
    return health_exit_code(loop) if args.exit_code else 0


def _intents(cluster: PluginCluster, args: argparse.Namespace, now: dt.datetime) -> int:
    items = cluster.list("handoffintents", all_namespaces=args.all_namespaces, selector=args.selector)
    if args.loop:
        items = [i for i in items if jq_get(i, "spec", "loopRef", "name") == args.loop]
    if args.output is not None:
        info = kubectl_get.resolve_kind("handoffintents")
        print(
            kubectl_get.render(
                info, items, output=args.output, single=False, all_namespaces=args.all_namespaces, now=now
            )
        )
        return 0
    print(kubectl_get.format_rows(_intent_rows(items, None, args.all_namespaces)))
    return 0


def run(
    args: argparse.Namespace, now: dt.datetime | None = None, sleep: Callable[[float], None] = time.sleep
) -> int:
    moment = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    if args.command == "completion":
        return kubectl_completion.run(args)
    conn = Connection(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        as_user=args.as_user,
        as_groups=tuple(args.as_groups or ()),
    )
    cluster = PluginCluster(conn)
    handlers: dict[str, Callable[[], int]] = {
        "get": lambda: kubectl_get.run(cluster, args, moment),
        "status": lambda: _status(cluster, args, moment),
        "intents": lambda: _intents(cluster, args, moment),
        "fleet": lambda: kubectl_fleet.run(cluster, args),
        "suppressions": lambda: kubectl_suppressions.run(cluster, args, moment),
        "drill": lambda: kubectl_drill.run(cluster, args, moment),
    }
    handler = handlers.get(args.command)
    return handler() if handler else kubectl_actions.run(cluster, args, moment, sleep)


def _names(kind: str, namespace: str | None) -> list[str]:
    """Object names for completion; nothing when the cluster cannot be asked."""
    try:
        plural = kubectl_get.resolve_kind(kind).plural
        items = PluginCluster(Connection(namespace=namespace)).list(plural)
    except Exception:  # completion must never print an error into the shell
        return []
    return sorted(str(jq_get(i, "metadata", "name")) for i in items)


def complete_main(argv: Sequence[str] | None = None) -> int:
    """``kubectl_complete-superloop``: kubectl's plugin completion hook (cobra's protocol)."""
    words = list(sys.argv[1:] if argv is None else argv)
    return kubectl_completion.complete(words, build_parser(), _names)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["__complete"]:
        return complete_main(words[1:])
    args = parse_args(words)
    try:
        return run(args)
    except OperatorError as exc:
        print(f"error: {exc}" if not str(exc).startswith("Error from server") else str(exc), file=sys.stderr)
        return EXIT_CODES["error"]
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback for a user: one line, and how to report it
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CODES["error"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
