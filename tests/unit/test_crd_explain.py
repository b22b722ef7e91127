"""What `kubectl explain`, `kubectl get` and server-side apply see in the generated CRDs.

Every field has a description (``kubectl explain`` is never empty), every list has an explicit
list type, CEL rules point at a field (``fieldPath``) and speak of ``spec.…``, every kind shows
its Ready condition in ``kubectl get``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "crds").glob("*.ops.superloop.dev.yaml"))


def _schema(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}.{name}", sub
        yield from _fields(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _fields(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _fields(node["additionalProperties"], f"{path}.*")


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or "<root>", node
    yield from _fields(node, path)


def test_there_are_five_kinds() -> None:
    assert len(CRDS) == 5


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name.split(".")[0])
def test_every_field_has_a_description(path: Path) -> None:
    fields = list(_fields(_schema(path), ""))
    # metadata is the apiserver's own (kubectl explain describes ObjectMeta); it may carry nothing
    missing = [name for name, sub in fields if not sub.get("description") and name != ".metadata"]
    assert len(fields) > 20
    assert missing == [], f"{len(missing)} of {len(fields)} fields without description"


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name.split(".")[0])
def test_every_list_has_an_explicit_list_type(path: Path) -> None:
    lists = [(name, sub) for name, sub in _nodes(_schema(path)) if sub.get("type") == "array"]
    assert lists
    untyped = [
        name for name, sub in lists if sub.get("x-kubernetes-list-type") not in ("atomic", "set", "map")
    ]
    assert untyped == []


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name.split(".")[0])
def test_cel_rules_name_their_field_and_speak_of_spec(path: Path) -> None:
    for where, node in _nodes(_schema(path)):
        for rule in node.get("x-kubernetes-validations") or []:
            assert "policy." not in rule["message"], (where, rule["message"])
            if "oldSelf" in rule["rule"] and where.endswith(".spec"):
                continue  # a whole-spec immutability rule is about the spec itself
            assert rule.get("fieldPath", "").startswith("."), (where, rule)


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name.split(".")[0])
def test_kubectl_get_shows_ready_status_reasons_and_message(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in columns]
    assert names[:2] == ["Ready", "Status"]
    assert names[-2:] == ["Age", "Message"]
    by_name = {c["name"]: c for c in columns}
    assert by_name["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert by_name["Reasons"]["jsonPath"] == ".status.reasonSummary"
    assert by_name["Message"]["priority"] == 1  # only in -o wide
    assert _schema(path)["properties"]["status"]["properties"]["reasonSummary"]["type"] == "string"


def test_handoff_intent_short_name() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "handoffintents.ops.superloop.dev.yaml").read_text())
    assert crd["spec"]["names"]["shortNames"] == ["hoi"]
