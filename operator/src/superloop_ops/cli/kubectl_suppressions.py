"""``kubectl superloop suppressions [policy]``: each suppression's owner, reason, expiry and what it hid.

Reads FleetPolicy objects (one by name, those of the namespace, or with ``-A`` every namespace's).
Each entry's state is recomputed at ``now`` from the spec (``core.fleet.suppressions``), so an
entry that expired since the last fleet pass already shows as expired; what it hid comes from the
policy's status (``status.suppressions``, written by the Fleet pass). A table by default;
``-o json`` / ``-o yaml`` print the rows with their namespace and policy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import yaml

from superloop_ops.cli.kubectl_get import format_rows
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.core.fleet import suppressions

__all__ = ["add_parser", "build_suppression_rows", "run"]

_LEAD = (("NAMESPACE", "namespace"), ("POLICY", "policy"))


class _Reader(Protocol):
    def get(self, plural: str, name: str) -> JsonObject: ...

    def list(
        self, plural: str, *, all_namespaces: bool = False, selector: str | None = None
    ) -> list[JsonObject]: ...


def add_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    """Register ``suppressions`` on the plugin's subparsers (``parents``: the kubectl flags)."""
    cmd = sub.add_parser(
        "suppressions",
        parents=list(parents),
        help="list suppressions: owner, reason, expires in, what each hid",
    )
    cmd.add_argument("policy", nargs="?", default=None, help="a FleetPolicy (default: all in the namespace)")


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def build_suppression_rows(policies: Sequence[Mapping[str, Any]], now: dt.datetime) -> list[JsonObject]:
    """One row per suppression of each policy, in namespace and policy order."""
    rows: list[JsonObject] = []
    for policy in sorted(
        policies,
        key=lambda p: (
            str(_obj(p.get("metadata")).get("namespace")),
            str(_obj(p.get("metadata")).get("name")),
        ),
    ):
        meta = _obj(policy.get("metadata"))
        counted = _obj(policy.get("status")).get("suppressions")
        entries = suppressions.build_suppression_status(
            _obj(policy.get("spec")), now, counted if isinstance(counted, list) else None
        )
        rows += [{"namespace": meta.get("namespace"), "policy": meta.get("name"), **e} for e in entries]
    return rows


def run(cluster: _Reader, args: argparse.Namespace, now: dt.datetime) -> int:
    """Fetch the policies and print their suppressions."""
    if args.policy:
        policies = [cluster.get("fleetpolicies", args.policy)]
    else:
        policies = cluster.list("fleetpolicies", all_namespaces=args.all_namespaces, selector=args.selector)
    rows = build_suppression_rows(policies, now)
    if args.output == "json":
        print(json.dumps({"suppressions": rows}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump({"suppressions": rows}, sort_keys=False).rstrip())
    elif not rows:
        print("No suppressions found.")
    else:
        lead = _LEAD if args.all_namespaces else _LEAD[1:]
        print(format_rows(suppressions.build_suppression_table(rows, now, lead)))
    return 0
