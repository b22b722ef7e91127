"""The CRDs on disk are what the models generate, and the CRD test cases agree with the models.

The apiserver side of the same cases is checked by the e2e suite (``kubectl apply`` of every
file under ``tests/data/crd-cases/``); here each invalid case must also be refused by the
pydantic model, with the same message wherever the rule is a mirrored CEL rule.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import pytest
import yaml

from superloop_ops import errors, models
from superloop_ops.models import common

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "data" / "crd-cases"
SAMPLES = ROOT / "config" / "samples"
KINDS: dict[str, type[common.KindModel]] = {k.crd.kind: k for k in models.ALL_KINDS}


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_crds", ROOT / "operator" / "tools" / "gen_crds.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_crds", module)
    spec.loader.exec_module(module)
    return module


gen_crds = _load_tool()


def _cel_messages() -> set[str]:
    found: set[str] = set()

    def walk(model: type[pydantic.BaseModel]) -> None:
        if issubclass(model, common.CamelModel):
            found.update(r.message for r in model.cel_rules)
        for info in model.model_fields.values():
            for arg in _model_args(info.annotation):
                walk(arg)

    for kind in models.ALL_KINDS:
        walk(kind)
    return found


def _model_args(annotation: Any) -> Iterator[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _model_args(arg)


def _cases(kind: str) -> list[Path]:
    return sorted((CASES / kind).glob("*.yaml"))


def _walk_schema(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in ("properties",):
                for name, sub in value.items():
                    yield from _walk_schema(sub, f"{path}.{name}")
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                yield from _walk_schema(value, f"{path}[]")


# -- generated files -------------------------------------------------------------------------


def test_crd_files_match_the_models() -> None:
    generated = gen_crds.build_crds()
    assert len(generated) == len(models.ALL_KINDS)
    for rel in gen_crds.CRD_DIRS:
        for name, text in generated.items():
            assert (ROOT / rel / name).read_text(encoding="utf-8") == text, (
                f"{rel / name} is stale; run: python operator/tools/gen_crds.py"
            )


def test_check_mode_passes_on_this_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_crds.main(["--check", "--root", str(ROOT)]) == 0
    assert capsys.readouterr().out == ""


def test_check_mode_fails_with_a_diff_when_a_copy_drifts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gen_crds.main(["--root", str(tmp_path)]) == 0
    for rel in gen_crds.CRD_DIRS:
        assert sorted(p.name for p in (tmp_path / rel).iterdir()) == sorted(gen_crds.build_crds())
    assert gen_crds.main(["--check", "--root", str(tmp_path)]) == 0
    chart_copy = tmp_path / "helm/superloop-ops/crds/loops.ops.superloop.dev.yaml"
    chart_copy.write_text(chart_copy.read_text().replace("sloop", "slp"), encoding="utf-8")
    stray = tmp_path / "crds" / "widgets.ops.superloop.dev.yaml"
    stray.write_text("kind: CustomResourceDefinition\n", encoding="utf-8")
    capsys.readouterr()
    assert gen_crds.main(["--check", "--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "-    - slp" in captured.out
    assert "+    - sloop" in captured.out
    assert "widgets.ops.superloop.dev.yaml: not generated" in captured.out
    assert "2 CRD file(s) out of date" in captured.err


def test_check_mode_reports_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen_crds.main(["--root", str(tmp_path)])
    shutil.rmtree(tmp_path / "helm")
    assert gen_crds.main(["--check", "--root", str(tmp_path)]) == 1
    assert "(on disk)" in capsys.readouterr().out


@pytest.mark.parametrize("kind", models.ALL_KINDS, ids=lambda k: k.crd.kind)
def test_schema_is_structural(kind: type[common.KindModel]) -> None:
    crd = gen_crds.build_crd(kind)
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["categories"] == ["superloop"]
    default_columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert default_columns[-1] == "Age"
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk_schema(schema):
        for banned in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const"):
            assert banned not in node, f"{kind.crd.kind}{path}: {banned}"
        assert node.get("additionalProperties") is not False, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields") is True, path
        bare_object = node.get("type") == "object" and not (
            {"properties", "additionalProperties"} & node.keys()
        )
        if bare_object and path != ".metadata":
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, path
        if path.startswith(".spec"):
            assert "nullable" not in node, path


def test_status_free_form_surfaces_and_nullable_fields() -> None:
    status = gen_crds.build_crd(models.Loop)["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"
    ]["status"]["properties"]
    for surface in ("state", "cursor", "health", "heartbeat", "sequence", "transportHealth", "visibility"):
        assert {k: v for k, v in status[surface].items() if k != "description"} == {
            "type": "object",
            "nullable": True,
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-map-type": "atomic",  # tracked whole in managedFields (issue 12, memory)
        }
        assert status[surface]["description"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_cel_rules_are_emitted_where_declared() -> None:
    text = "".join(gen_crds.build_crds().values())
    rules = [m for k in models.ALL_KINDS for m in _all_rules(k)]
    for message in _cel_messages():
        declared = [m for m in rules if m.message == message and m.rule is not None]
        api_message = (declared[0].api_message or message) if declared else message
        assert (api_message in text) == bool(declared), message


def _all_rules(kind: type[pydantic.BaseModel]) -> Iterator[common.CelRule]:
    seen: set[type[pydantic.BaseModel]] = set()

    def walk(model: type[pydantic.BaseModel]) -> Iterator[common.CelRule]:
        if model in seen:
            return
        seen.add(model)
        if issubclass(model, common.CamelModel):
            yield from model.cel_rules
        for info in model.model_fields.values():
            for arg in _model_args(info.annotation):
                yield from walk(arg)

    yield from walk(kind)


def test_nested_defaults_are_published_fully_defaulted() -> None:
    spec = gen_crds.build_crd(models.Loop)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    assert spec["properties"]["thresholds"]["default"] == {
        "degradedHeartbeatLagSeconds": 120,
        "criticalHeartbeatLagSeconds": 300,
    }
    assert spec["properties"]["transport"]["default"] == "local"


# -- cases and samples -----------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(body, dict)
    return body


def test_there_are_enough_invalid_cases_and_each_declares_its_expectation() -> None:
    invalid = _cases("invalid")
    assert len(invalid) >= 20
    for path in invalid:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# expect: "), path.name
        assert len(first) > len("# expect: ") + 5, path.name
    assert {_load(p)["kind"] for p in invalid} == set(KINDS)


@pytest.mark.parametrize("path", _cases("invalid"), ids=lambda p: p.stem)
def test_invalid_case_is_refused_by_the_model_for_exactly_one_reason(path: Path) -> None:
    body = _load(path)
    expect = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(errors.InvalidSpecError) as info:
        KINDS[body["kind"]].from_body(body)
    cause = info.value.__cause__
    assert isinstance(cause, pydantic.ValidationError)
    assert len(cause.errors()) == 1, str(info.value)
    if expect in _cel_messages():
        assert expect in str(info.value)


@pytest.mark.parametrize(
    "path", _cases("valid") + sorted(SAMPLES.glob("*.yaml")), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_valid_cases_and_samples_are_accepted(path: Path) -> None:
    body = _load(path)
    parsed = KINDS[body["kind"]].from_body(body)
    assert parsed.metadata.name == body["metadata"]["name"]


def test_every_sample_kind_is_present() -> None:
    names = {p.name for p in SAMPLES.glob("*.yaml")}
    assert names >= {
        "loop.yaml",
        "loop-sprite.yaml",
        "fleet.yaml",
        "fleetpolicy.yaml",
        "handoffintent.yaml",
        "promotionapply.yaml",
    }


def test_samples_hold_no_future_dates_that_can_expire() -> None:
    # A reviewBy that is only valid because it lies in the future is a time bomb in Git.
    for path in SAMPLES.glob("*.yaml"):
        body = _load(path)
        if body["kind"] == "PromotionApply":
            assert "reviewBy" not in body["spec"]["governance"], path.name
        if body["kind"] == "FleetPolicy":
            # shadow executes nothing and needs no governance dates either
            assert body["spec"].get("mode", "advisory") in ("advisory", "shadow"), path.name
