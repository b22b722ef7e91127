"""GitOps health on the API server: Flux's CEL expressions and ``kubectl wait --for=condition=Ready``.

Flux evaluates ``healthCheckExprs`` with CEL over the object. The test evaluates the shipped
expressions (gitops/flux/health-check-exprs.yaml) with the API server's own CEL: a throwaway
CRD carries one validation rule per expression, ``<expression> == false``, over a copy of the
object (its ``metadata.generation`` and ``status``); a server-side dry run of each scenario's
object then reports exactly the rules whose expression is true. Flux's order then gives the
verdict: inProgress, failed, current, else InProgress.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers.kind_statuses import SCENARIOS, build_object

from e2e.harness.cluster import Cluster

REPO = Path(__file__).resolve().parent.parent
EXPRS = REPO / "gitops" / "flux" / "health-check-exprs.yaml"
GROUP = "probe.superloop.dev"
FIELDS = ("inProgress", "failed", "current")
EXPECTED = {
    "loop-converged": "Current",
    "loop-degraded": "Current",
    "loop-critical": "Failed",
    "loop-failing": "Failed",
    "loop-waiting": "InProgress",
    "loop-suspended": "Current",
    "loop-new-generation": "InProgress",
    "fleet-reconciled": "Current",
    "fleet-all-failed": "Failed",
    "fleet-invalid": "Failed",
    "policy-awaiting": "InProgress",
    "intent-pending": "Current",
    "intent-executed": "Current",
    "intent-failed": "Failed",
    "apply-applied": "Current",
    "apply-dry-run": "Current",
    "apply-pending": "InProgress",
    "apply-rejected": "Failed",
}
_STR = {"type": "string", "maxLength": 1024}


def _checks() -> list[dict[str, str]]:
    return list(yaml.safe_load(EXPRS.read_text())["healthCheckExprs"])


def _on_probe(expr: str) -> str:
    """The rules sit on the probe's copy of the object: its top-level fields are ``self``'s."""
    return re.sub(r"(?<![\w.])(status|metadata)\.", r"self.\1.", expr)


def _probe_crd(plural: str) -> dict[str, Any]:
    rules = [
        {"rule": f"!({_on_probe(check[field])})", "message": f"true:{check['kind']}:{field}"}
        for check in _checks()
        for field in FIELDS
        if field in check
    ]
    condition = {"type": "object", "properties": {k: _STR for k in ("type", "status", "reason", "message")}}
    status = {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer"},
            "healthStatus": _STR,
            "conditions": {"type": "array", "maxItems": 16, "items": condition},
        },
    }
    obj = {
        "type": "object",
        "x-kubernetes-validations": rules,
        "properties": {
            "metadata": {"type": "object", "properties": {"generation": {"type": "integer"}}},
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": plural[:-1],
                "kind": "CelProbe" + plural[-6:].capitalize(),
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": {"object": obj}}},
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def probe(cluster: Cluster) -> Iterator[dict[str, Any]]:
    crd = _probe_crd(f"celprobes{uuid.uuid4().hex[:6]}")
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    name = crd["metadata"]["name"]
    try:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        yield crd
    finally:
        cluster.kubectl("delete", "crd", name, "--wait=false", check=False)


def _true_expressions(cluster: Cluster, crd: dict[str, Any], namespace: str, obj: dict[str, Any]) -> set[str]:
    names = crd["spec"]["names"]
    probe = {
        "apiVersion": f"{GROUP}/v1",
        "kind": names["kind"],
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "object": {
                "metadata": {"generation": obj["metadata"]["generation"]},
                "status": _strip(obj["status"]),
            }
        },
    }
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(probe), check=False
    )
    assert "Invalid value" in result.stderr or result.returncode == 0, result.stderr
    kind = obj["kind"]
    return {field for field in FIELDS if f"true:{kind}:{field}" in result.stderr}


def _strip(status: dict[str, Any]) -> dict[str, Any]:
    """Only the fields the expressions read (the probe's schema prunes the rest anyway)."""
    keep = {"observedGeneration", "healthStatus", "conditions"}
    out = {k: v for k, v in status.items() if k in keep}
    out["conditions"] = [
        {k: c.get(k, "") for k in ("type", "status", "reason", "message")} for c in status["conditions"]
    ]
    return out


def _flux_verdict(true: set[str]) -> str:
    for field, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        if field in true:
            return verdict
    return "InProgress"


def test_flux_expressions_cover_every_kind() -> None:
    assert {c["kind"] for c in _checks()} == {kind for kind, _ in SCENARIOS.values()}
    assert set(EXPECTED) == set(SCENARIOS)


def test_flux_health_check_exprs_judge_the_objects_right(
    cluster: Cluster, namespace: str, probe: dict[str, Any]
) -> None:
    verdicts = {}
    for scenario in sorted(EXPECTED):
        obj = build_object(scenario)
        verdicts[scenario] = _flux_verdict(_true_expressions(cluster, probe, namespace, obj))
    assert verdicts == EXPECTED
