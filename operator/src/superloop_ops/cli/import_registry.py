"""``superloop-ops import-registry registry.v1.json``: move a file-based fleet to the Kubernetes API.

Prints, as one multi-document YAML stream, a FleetPolicy (the registry ``policy``), one Loop per
registry entry, and a Fleet whose entries reference those Loops. The registry is validated with
the same fail-closed rules as ``fleet registry`` (an expired governance review is reported as
an error too: a migration should not carry a lapsed approval silently). Every object is
checked against the API models before anything is printed.

What a file registry cannot say is asked for on the command line: the PersistentVolumeClaim
holding local loops' repositories (``--claim-name``), and the Secret that holds the service
tokens (``--token-secret``; each ``tokenEnv`` name becomes a key of that Secret). Suppressions
move with their terms (``suppressionTerms``); one without terms is refused, since the API only
admits new suppressions that have an owner, a reason and an expiry.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from superloop_ops import clock as clock_mod
from superloop_ops.core.common.jsonutil import JsonObject
from superloop_ops.engine.fleet import fleet_commands
from superloop_ops.errors import ContractError, InvalidSpecError
from superloop_ops.models.common import GROUP_VERSION
from superloop_ops.models.fleet import Fleet
from superloop_ops.models.fleet_policy import FleetPolicy
from superloop_ops.models.loop import Loop

__all__ = ["add_arguments", "build_registry_manifests", "run"]

_DNS_UNSAFE = re.compile(r"[^a-z0-9-]+")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("registry_file", help="path to registry.v1.json")
    parser.add_argument("--namespace", default=None, help="metadata.namespace of every object")
    parser.add_argument("--name", default=None, help="Fleet/FleetPolicy name (default: the fleetId)")
    parser.add_argument(
        "--claim-name", default="superloop-repo", help="PVC holding the repository of local loops"
    )
    parser.add_argument("--sub-path", default="", help="repository directory inside the claim")
    parser.add_argument(
        "--token-secret", default=None, help="Secret holding service tokens (default: <name>-service-tokens)"
    )


def _dns_name(value: str) -> str:
    name = _DNS_UNSAFE.sub("-", value.lower()).strip("-")
    return name[:63].rstrip("-") or "fleet"


def _meta(name: str, namespace: str | None, **extra: Any) -> JsonObject:
    meta: JsonObject = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta.update({key: value for key, value in extra.items() if value})
    return meta


def _camel_policy(policy: JsonObject) -> JsonObject:
    """The FleetPolicy spec: the normalised registry policy minus derived fields."""
    autonomous = dict(policy["autonomous"])
    autonomous.pop("enabled", None)
    governance = dict(autonomous.get("governance") or {})
    governance.pop("reviewWindowDays", None)
    if governance:
        autonomous["governance"] = governance
    else:
        autonomous.pop("governance", None)
    spec: JsonObject = {"mode": policy["mode"], "suppressions": policy["suppressions"]}
    spec |= {key: policy[key] for key in ("suppressionTerms", "suppressionLimits") if key in policy}
    return spec | {"noiseControls": policy["noiseControls"], "autonomous": autonomous}


def _unowned_suppressions(registry: JsonObject) -> list[str]:
    """Suppression keys without terms: the API refuses them on a new FleetPolicy."""
    policy = registry["policy"]
    terms = policy.get("suppressionTerms") or {}
    return [key for key in policy["suppressions"] if key not in terms]


def build_registry_manifests(
    registry: JsonObject,
    *,
    name: str | None = None,
    namespace: str | None = None,
    claim_name: str = "superloop-repo",
    sub_path: str = "",
    token_secret: str | None = None,
) -> list[JsonObject]:
    """FleetPolicy, Loops and Fleet documents (camelCase, ready for ``kubectl apply``)."""
    base = _dns_name(name or str(registry["fleetId"]) or "default")
    secret = token_secret or f"{base}-service-tokens"
    documents: list[JsonObject] = [
        {
            "apiVersion": GROUP_VERSION,
            "kind": "FleetPolicy",
            "metadata": _meta(base, namespace),
            "spec": _camel_policy(registry["policy"]),
        }
    ]
    entries: list[JsonObject] = []
    for loop in registry["loops"]:
        loop_name = _dns_name(f"{base}-{loop['loopId']}")
        spec: JsonObject = {"loopId": loop["loopId"], "transport": loop["transport"]}
        service = loop.get("service") or {}
        if loop["transport"] == "local":
            pvc: JsonObject = {"claimName": claim_name}
            if sub_path:
                pvc["subPath"] = sub_path
            spec["source"] = {"pvc": pvc}
        else:
            service_spec: JsonObject = {
                "baseUrl": service.get("baseUrl"),
                "retryAttempts": int(service.get("retryAttempts", 3)),
                "retryBackoffSeconds": int(service.get("retryBackoffSeconds", 1)),
            }
            if service.get("tokenEnv"):
                service_spec["tokenSecretRef"] = {"name": secret, "key": service["tokenEnv"]}
            spec["service"] = service_spec
        sprite = loop.get("sprite") or {}
        annotations = {
            "ops.superloop.dev/sprite-id": sprite.get("id"),
            "ops.superloop.dev/sprite-assignment": sprite.get("assignment"),
        }
        documents.append(
            {
                "apiVersion": GROUP_VERSION,
                "kind": "Loop",
                "metadata": _meta(
                    loop_name,
                    namespace,
                    annotations={key: value for key, value in annotations.items() if value},
                ),
                "spec": spec,
            }
        )
        entry: JsonObject = {
            "loopId": loop["loopId"],
            "enabled": loop["enabled"],
            "loopRef": {"name": loop_name},
        }
        if loop.get("metadata"):
            entry["metadata"] = loop["metadata"]
        entries.append(entry)
    documents.append(
        {
            "apiVersion": GROUP_VERSION,
            "kind": "Fleet",
            "metadata": _meta(base, namespace),
            "spec": {"fleetId": registry["fleetId"], "loops": entries, "policyRef": {"name": base}},
        }
    )
    return documents


def _check(document: JsonObject) -> None:
    kinds: dict[str, Any] = {"Fleet": Fleet, "FleetPolicy": FleetPolicy, "Loop": Loop}
    kinds[document["kind"]].from_body(document)


def run(args: argparse.Namespace) -> int:
    path = Path(args.registry_file).absolute()
    registry = fleet_commands.fetch_registry(path, clock_mod.SystemClock().now())
    unowned = _unowned_suppressions(registry)
    if unowned:
        raise ContractError(
            f"policy.suppressions {', '.join(unowned)}: a FleetPolicy needs policy.suppressionTerms"
            " (owner, reason, startsAt, expiresAt) for every suppression; add them to the registry"
        )
    documents = build_registry_manifests(
        registry,
        name=args.name,
        namespace=args.namespace,
        claim_name=args.claim_name,
        sub_path=args.sub_path,
        token_secret=args.token_secret,
    )
    try:
        for document in documents:
            _check(document)
    except InvalidSpecError as exc:
        raise ContractError(str(exc)) from exc
    sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False))
    return 0
