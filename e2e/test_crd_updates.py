"""The CRDs' transition rules (CEL rules on ``oldSelf``) on a real API server.

``tests/data/crd-cases/invalid/`` covers the rules a single ``kubectl apply`` can break. The
rules here only fire on UPDATE, so each test creates a valid object first, then attempts the
forbidden change and checks the apiserver refuses it with the rule's own message, and that the
updates the rule leaves open (metadata, a re-apply of the same spec, the first status write)
still pass. ``test_every_transition_rule_is_covered`` keeps the list in step with ``crds/``.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.cluster import Cluster

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "crds"
VALID = REPO / "tests" / "data" / "crd-cases" / "valid"
GROUP = "ops.superloop.dev"

INTENT_SPEC_IMMUTABLE = "spec is immutable; create a new HandoffIntent instead"
APPLY_SPEC_IMMUTABLE = "spec is immutable; create a new PromotionApply instead"
APPLIED_AT_FROZEN = "status.appliedAt is immutable once applied"
RECORD_FROZEN = "status.record is immutable once applied"
SUPPRESSION_TERMS_NEEDED = "new spec.suppressions entries need spec.suppressionTerms"

# (CRD file, JSON path of the schema node holding the rule, message) for every rule on oldSelf.
TRANSITION_RULES = {
    ("handoffintents.ops.superloop.dev.yaml", "spec", INTENT_SPEC_IMMUTABLE),
    ("promotionapplies.ops.superloop.dev.yaml", "spec", APPLY_SPEC_IMMUTABLE),
    ("promotionapplies.ops.superloop.dev.yaml", "status", APPLIED_AT_FROZEN),
    ("promotionapplies.ops.superloop.dev.yaml", "status", RECORD_FROZEN),
    # exercised in e2e/test_suppressions_operator.py (an object stored under an older CRD)
    ("fleetpolicies.ops.superloop.dev.yaml", "spec", SUPPRESSION_TERMS_NEEDED),
}


def _walk_rules(node: Any, path: str) -> list[tuple[str, str, str]]:
    """(path, rule, message) of every x-kubernetes-validations entry under ``node``."""
    found: list[tuple[str, str, str]] = []
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations") or []:
            found.append((path, str(rule["rule"]), str(rule.get("message", ""))))
        for key, child in (node.get("properties") or {}).items():
            found.extend(_walk_rules(child, f"{path}.{key}" if path else key))
        if "items" in node:
            found.extend(_walk_rules(node["items"], f"{path}[]"))
    return found


def test_every_transition_rule_is_covered() -> None:
    """A new ``oldSelf`` rule in the CRDs must get a test here (and an entry in TRANSITION_RULES)."""
    seen = set()
    for crd_path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(crd_path.read_text())
        for version in crd["spec"]["versions"]:
            for path, rule, message in _walk_rules(version["schema"]["openAPIV3Schema"], ""):
                if "oldSelf" in rule:
                    seen.add((crd_path.name, path, message))
    assert seen == TRANSITION_RULES


# -- helpers -----------------------------------------------------------------------------------


def _case(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((VALID / f"{name}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _apply(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False)


def _get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", f"{kind}.{GROUP}", name, "-n", namespace, "-o", "json").stdout
    loaded = json.loads(out)
    assert isinstance(loaded, dict)
    return loaded


def _create(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    created = _apply(cluster, namespace, doc)
    assert created.returncode == 0, created.stderr
    return _get(cluster, namespace, doc["kind"].lower(), doc["metadata"]["name"])


def _changed(doc: dict[str, Any], *path_and_value: Any) -> dict[str, Any]:
    """A deep copy of ``doc`` with the value at ``path`` (keys, then the value) replaced."""
    *path, value = path_and_value
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def _assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, f"the update was accepted:\n{result.stdout}"
    assert message in result.stderr, f"{message!r} not in:\n{result.stderr}"


def _patch_status(
    cluster: Cluster, namespace: str, name: str, status: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """A merge patch of PromotionApply status as admin (the operator's own way of writing it)."""
    return cluster.kubectl(
        "patch", f"promotionapply.{GROUP}", name, "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
        check=False,
    )  # fmt: skip


# -- HandoffIntent: spec is immutable ----------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "path_and_value"),
    [
        pytest.param("handoffintent-from-candidate", ("spec", "intent", "reject"), id="intent"),
        pytest.param("handoffintent-from-candidate", ("spec", "loopRef", "name", "other"), id="loopRef"),
        pytest.param(
            "handoffintent-from-candidate", ("spec", "candidate", "severity", "critical"), id="nested-field"
        ),
        pytest.param("handoffintent-minimal", ("spec", "note", "changed my mind"), id="field-added"),
    ],
)
def test_handoffintent_spec_change_is_refused(
    cluster: Cluster, namespace: str, case: str, path_and_value: tuple[Any, ...]
) -> None:
    doc = _case(case)
    before = _create(cluster, namespace, doc)

    _assert_refused(_apply(cluster, namespace, _changed(doc, *path_and_value)), INTENT_SPEC_IMMUTABLE)
    after = _get(cluster, namespace, "handoffintent", doc["metadata"]["name"])
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_handoffintent_metadata_and_same_spec_updates_pass(cluster: Cluster, namespace: str) -> None:
    doc = _case("handoffintent-minimal")
    name = doc["metadata"]["name"]
    _create(cluster, namespace, doc)

    # A re-apply of the same spec with a new annotation (GitOps sync) passes.
    annotated = _changed(doc, "metadata", "annotations", {"example.com/owner": "team-a"})
    reapplied = _apply(cluster, namespace, annotated)
    assert reapplied.returncode == 0, reapplied.stderr
    # So do kubectl annotate/label, the approval path people use.
    cluster.kubectl("annotate", f"handoffintent.{GROUP}/{name}", "-n", namespace, "example.com/note=ok")
    cluster.kubectl("label", f"handoffintent.{GROUP}/{name}", "-n", namespace, "team=a")

    current = _get(cluster, namespace, "handoffintent", name)
    assert current["metadata"]["annotations"]["example.com/owner"] == "team-a"
    assert current["metadata"]["annotations"]["example.com/note"] == "ok"
    assert current["metadata"]["labels"] == {"team": "a"}
    assert current["spec"] == doc["spec"]


def test_handoffintent_status_is_not_frozen(cluster: Cluster, namespace: str) -> None:
    """Only the spec is immutable: the operator moves status through the execution phases."""
    doc = _case("handoffintent-minimal")
    name = doc["metadata"]["name"]
    _create(cluster, namespace, doc)
    for phase in ("pending_operator_confirmation", "executing"):
        result = cluster.kubectl(
            "patch", f"handoffintent.{GROUP}", name, "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": {"phase": phase}}), check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert _get(cluster, namespace, "handoffintent", name)["status"]["phase"] == "executing"


# -- PromotionApply: spec is immutable ---------------------------------------------------------


@pytest.mark.parametrize(
    "path_and_value",
    [
        pytest.param(("spec", "intent", "rollback"), id="intent"),
        pytest.param(("spec", "expandStep", 50), id="expandStep"),
        pytest.param(("spec", "governance", "rationale", "reworded"), id="governance-rationale"),
        pytest.param(("spec", "dryRun", True), id="dryRun"),
        pytest.param(("spec", "idempotencyKey", "expand-2"), id="field-added"),
    ],
)
def test_promotionapply_spec_change_is_refused(
    cluster: Cluster, namespace: str, path_and_value: tuple[Any, ...]
) -> None:
    doc = _case("promotionapply-minimal")
    before = _create(cluster, namespace, doc)
    # The defaults the apiserver filled in are part of the frozen spec.
    assert before["spec"]["expandStep"] == 25
    assert before["spec"]["dryRun"] is False

    _assert_refused(_apply(cluster, namespace, _changed(doc, *path_and_value)), APPLY_SPEC_IMMUTABLE)
    assert _get(cluster, namespace, "promotionapply", doc["metadata"]["name"])["spec"] == before["spec"]


def test_promotionapply_reapply_of_same_spec_passes(cluster: Cluster, namespace: str) -> None:
    doc = _case("promotionapply-minimal")
    before = _create(cluster, namespace, doc)
    again = _apply(cluster, namespace, _changed(doc, "metadata", "labels", {"wave": "1"}))
    assert again.returncode == 0, again.stderr
    after = _get(cluster, namespace, "promotionapply", doc["metadata"]["name"])
    assert after["spec"] == before["spec"]
    assert after["metadata"]["labels"] == {"wave": "1"}


# -- PromotionApply: status.appliedAt and status.record are frozen once written ------------------

APPLIED_AT = "2026-01-05T10:00:00Z"
RECORD = {
    "intent": "expand",
    "before": {"canaryPercent": 25, "paused": False},
    "after": {"canaryPercent": 50, "paused": False},
    "by": "ops-user",
}


def _applied(cluster: Cluster, namespace: str) -> str:
    """A PromotionApply whose status went pending, then applied (appliedAt and record together)."""
    doc = _case("promotionapply-minimal")
    name = str(doc["metadata"]["name"])
    _create(cluster, namespace, doc)
    # Before the apply, status moves freely (no appliedAt/record yet).
    for status in ({"phase": "pending", "reasonCodes": []}, {"phase": "pending", "message": "gates pending"}):
        result = _patch_status(cluster, namespace, name, status)
        assert result.returncode == 0, result.stderr
    first = _patch_status(
        cluster, namespace, name, {"phase": "applied", "appliedAt": APPLIED_AT, "record": RECORD}
    )
    assert first.returncode == 0, first.stderr
    status = _get(cluster, namespace, "promotionapply", name)["status"]
    assert status["appliedAt"] == APPLIED_AT
    assert status["record"] == RECORD
    return name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"appliedAt": "2026-01-05T10:00:01Z"}, APPLIED_AT_FROZEN),
        ({"appliedAt": None}, APPLIED_AT_FROZEN),  # a merge patch null removes the field
        ({"record": {"after": {"canaryPercent": 75}}}, RECORD_FROZEN),  # nested change
        ({"record": {"note": "added later"}}, RECORD_FROZEN),  # a new key in the record
        ({"record": None}, RECORD_FROZEN),
    ],
    ids=[
        "appliedAt-changed",
        "appliedAt-removed",
        "record-nested-change",
        "record-key-added",
        "record-removed",
    ],
)
def test_promotionapply_applied_status_is_frozen(
    cluster: Cluster, namespace: str, change: dict[str, Any], message: str
) -> None:
    name = _applied(cluster, namespace)
    _assert_refused(_patch_status(cluster, namespace, name, change), message)
    status = _get(cluster, namespace, "promotionapply", name)["status"]
    assert status["appliedAt"] == APPLIED_AT
    assert status["record"] == RECORD


def test_promotionapply_other_status_fields_stay_writable_after_apply(
    cluster: Cluster, namespace: str
) -> None:
    """The freeze covers the applied record only: conditions, phase and messages still move."""
    name = _applied(cluster, namespace)
    condition = {
        "type": "Applied",
        "status": "True",
        "reason": "Applied",
        "lastTransitionTime": APPLIED_AT,
        "message": "canary 25 -> 50",
    }
    later = _patch_status(
        cluster, namespace, name,
        {"phase": "replayed", "message": "replayed the first record", "conditions": [condition]},
    )  # fmt: skip
    assert later.returncode == 0, later.stderr
    # Writing the same appliedAt and record again is no change, so it passes too.
    same = _patch_status(cluster, namespace, name, {"appliedAt": APPLIED_AT, "record": RECORD})
    assert same.returncode == 0, same.stderr
    status = _get(cluster, namespace, "promotionapply", name)["status"]
    assert status["phase"] == "replayed"
    assert status["conditions"][0]["reason"] == "Applied"
    assert (status["appliedAt"], status["record"]) == (APPLIED_AT, RECORD)


def test_promotionapply_record_and_applied_at_freeze_independently(cluster: Cluster, namespace: str) -> None:
    """Each rule guards its own field: a record written alone is frozen; appliedAt may follow it."""
    doc = _case("promotionapply-minimal")
    name = str(doc["metadata"]["name"])
    _create(cluster, namespace, doc)
    assert _patch_status(cluster, namespace, name, {"record": RECORD}).returncode == 0
    _assert_refused(
        _patch_status(cluster, namespace, name, {"record": {"by": "someone-else"}}), RECORD_FROZEN
    )
    late = _patch_status(cluster, namespace, name, {"appliedAt": APPLIED_AT})
    assert late.returncode == 0, late.stderr
    _assert_refused(
        _patch_status(cluster, namespace, name, {"appliedAt": "2026-02-01T00:00:00Z"}), APPLIED_AT_FROZEN
    )
