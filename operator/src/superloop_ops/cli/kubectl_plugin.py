"""``kubectl-superloop``: the runbook's loop commands against Loop and HandoffIntent objects.

``kubectl superloop status <loop>`` prints the runbook's status snapshot from the Loop's status
(the operator mirrors the JSON surfaces there), ``intents`` lists HandoffIntents with their
phase, ``approve <intent>`` annotates an intent as the current user (the name comes from a
SelfSubjectReview, so the chart's admission policy, which demands ``approved-by`` equal to the
requesting user, accepts it), ``replay <loop>`` asks for a one-shot replay from the start, and
``drill record`` records incident drill evidence for the promotion gates (``kubectl_drill``).

Honours ``--kubeconfig``, ``--context`` and ``-n/--namespace`` like kubectl itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from superloop_ops.cli import kubectl_drill, kubectl_fleet
from superloop_ops.core.common.jsonutil import JsonObject, format_ts
from superloop_ops.core.handoff.handoff_intent_resource import (
    ANNOTATION_APPROVED,
    ANNOTATION_APPROVED_AT,
    ANNOTATION_APPROVED_BY,
    ANNOTATION_NOTE,
)
from superloop_ops.core.loop.artifacts import jq_get
from superloop_ops.core.loop.loop_resource import (
    ANNOTATION_REPLAY,
    ANNOTATION_REPLAY_REQUESTED_AT,
    REPLAY_FROM_START,
)
from superloop_ops.errors import OperatorError
from superloop_ops.k8s.edge import GROUP, VERSION, ObjectNotFoundError, build_api_client, map_api_exception

__all__ = ["build_parser", "build_status_snapshot", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl-superloop", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", default=None, help="path to the kubeconfig file")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = sub.add_parser("status", help="print the status snapshot of a Loop")
    status.add_argument("loop")
    status.add_argument("--compact", action="store_true", help="one-line JSON")
    intents = sub.add_parser("intents", help="list HandoffIntents with their phase")
    intents.add_argument("--loop", default=None, help="only intents for this Loop")
    approve = sub.add_parser("approve", help="approve a HandoffIntent as the current user")
    approve.add_argument("intent")
    approve.add_argument("--note", default=None)
    replay = sub.add_parser("replay", help="replay a Loop's events from the start (one-shot)")
    replay.add_argument("loop")
    kubectl_fleet.add_parser(sub)
    kubectl_drill.add_parser(sub)
    return parser


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


class _Cluster:
    """The few API calls the plugin makes, with errors mapped to ``errors.*``."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        from kubernetes import client, config

        self._client = client
        self.api = build_api_client(kubeconfig, context) if (kubeconfig or context) else _default_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.namespace = namespace or _context_namespace(config, kubeconfig, context)

    def _call(self, what: str, fn: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except (ApiException, HTTPError, OSError) as exc:
            raise map_api_exception(exc, what) from exc

    def get(self, plural: str, name: str) -> JsonObject:
        return dict(
            self._call(
                f"{plural}/{name}",
                lambda: self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, name
                ),
            )
        )

    def list(self, plural: str) -> list[JsonObject]:
        listing = self._call(
            plural, lambda: self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)
        )
        return [dict(item) for item in listing.get("items", [])]

    def annotate(self, plural: str, name: str, annotations: Mapping[str, str | None]) -> None:
        body = {"metadata": {"annotations": dict(annotations)}}
        self._call(
            f"{plural}/{name}",
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, body
            ),
        )

    def _write(self, what: str, fn: Any) -> Any:
        """Like ``_call``, with 409 (changed or created meanwhile) as ``WriteConflictError``."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except ApiException as exc:
            if exc.status == 409:
                raise kubectl_drill.WriteConflictError(f"{what}: conflict") from exc
            raise map_api_exception(exc, what) from exc
        except (HTTPError, OSError) as exc:
            raise map_api_exception(exc, what) from exc

    def fetch_config_map(self, name: str) -> tuple[dict[str, str], str] | None:
        core = self._client.CoreV1Api(self.api)
        try:
            found = self._call(
                f"configmaps/{name}", lambda: core.read_namespaced_config_map(name, self.namespace)
            )
        except ObjectNotFoundError:
            return None
        return dict(found.data or {}), str(found.metadata.resource_version)

    def create_config_map(self, name: str, data: Mapping[str, str]) -> None:
        core = self._client.CoreV1Api(self.api)
        body = self._client.V1ConfigMap(metadata=self._client.V1ObjectMeta(name=name), data=dict(data))
        self._write(f"configmaps/{name}", lambda: core.create_namespaced_config_map(self.namespace, body))

    def patch_config_map(self, name: str, data: Mapping[str, str], resource_version: str) -> None:
        core = self._client.CoreV1Api(self.api)
        body = {"metadata": {"resourceVersion": resource_version}, "data": dict(data)}
        self._write(
            f"configmaps/{name}", lambda: core.patch_namespaced_config_map(name, self.namespace, body)
        )

    def username(self) -> str:
        """Who the API server says we are (SelfSubjectReview), as the admission policy sees it."""
        api = self._client.AuthenticationV1Api(self.api)
        review = self._call(
            "selfsubjectreview",
            lambda: api.create_self_subject_review(self._client.V1SelfSubjectReview(metadata={})),
        )
        name = getattr(getattr(getattr(review, "status", None), "user_info", None), "username", None)
        if not name:
            raise OperatorError("the API server did not report a username for these credentials")
        return str(name)


def _default_client() -> Any:
    return build_api_client(None, None)


def _context_namespace(config: Any, kubeconfig: str | None, context: str | None) -> str:
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception:  # in-cluster or no kubeconfig: kubectl's default
        return "default"
    chosen = active
    if context:
        chosen = next((c for c in contexts if c.get("name") == context), active)
    return str((chosen or {}).get("context", {}).get("namespace") or "default")


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def run(args: argparse.Namespace, now: dt.datetime | None = None) -> int:
    moment = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    cluster = _Cluster(args.kubeconfig, args.context, args.namespace)
    if args.command == "status":
        snapshot = build_status_snapshot(cluster.get("loops", args.loop), moment)
        if args.compact:
            print(json.dumps(snapshot, separators=(",", ":")))
        else:
            print(json.dumps(snapshot, indent=2))
        return 0
    if args.command == "fleet":
        return kubectl_fleet.run(cluster, args)
    if args.command == "drill":
        return kubectl_drill.run(cluster, args, moment)
    if args.command == "intents":
        rows = [["NAME", "LOOP", "INTENT", "PHASE", "APPROVED-BY", "KEY"]]
        for item in sorted(cluster.list("handoffintents"), key=lambda i: str(jq_get(i, "metadata", "name"))):
            if args.loop and jq_get(item, "spec", "loopRef", "name") != args.loop:
                continue
            status = item.get("status") or {}
            rows.append(
                [
                    str(jq_get(item, "metadata", "name")),
                    str(jq_get(item, "spec", "loopRef", "name") or ""),
                    str(jq_get(item, "spec", "intent") or ""),
                    str(status.get("phase") or "pending_operator_confirmation"),
                    str(status.get("approvedBy") or ""),
                    str(status.get("idempotencyKey") or ""),
                ]
            )
        _print_table(rows)
        return 0
    if args.command == "approve":
        user = cluster.username()
        annotations: dict[str, str | None] = {
            ANNOTATION_APPROVED: "true",
            ANNOTATION_APPROVED_BY: user,
            ANNOTATION_APPROVED_AT: format_ts(moment),
        }
        if args.note is not None:
            annotations[ANNOTATION_NOTE] = args.note
        cluster.annotate("handoffintents", args.intent, annotations)
        print(f"handoffintent/{args.intent} approved by {user}")
        return 0
    cluster.annotate(
        "loops",
        args.loop,
        {ANNOTATION_REPLAY: REPLAY_FROM_START, ANNOTATION_REPLAY_REQUESTED_AT: format_ts(moment)},
    )
    print(f"loop/{args.loop} replay from start requested")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
