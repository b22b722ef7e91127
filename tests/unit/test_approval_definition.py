"""One definition of "a new approval" for the operator and the chart's admission policy (issue 10 item 1).

The operator consumes an approval by its fingerprint; the admission policy demands that whoever
changes an approval names themself. Both must look at the same annotations, or a change the
policy lets through unattributed becomes a new approval for the operator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from superloop_ops.core.handoff import handoff_intent_resource as intents
from superloop_ops.models import handoff_intent as model_intent

CHART = Path(__file__).resolve().parents[2] / "helm" / "superloop-ops"
BASE = {
    model_intent.APPROVED_ANNOTATION: "true",
    model_intent.APPROVED_BY_ANNOTATION: "alice",
    model_intent.APPROVED_AT_ANNOTATION: "2026-01-01T00:00:00Z",
    model_intent.NOTE_ANNOTATION: "ship it",
}


@pytest.mark.parametrize("annotation", model_intent.APPROVAL_ANNOTATIONS)
def test_changing_any_approval_annotation_is_a_new_approval_for_the_operator(annotation: str) -> None:
    before = intents.parse_approval(BASE).approval
    changed = intents.parse_approval({**BASE, annotation: BASE[annotation] + "x"}).approval
    assert before is not None
    assert changed is None or changed.fingerprint != before.fingerprint


def test_the_operator_fingerprint_reads_only_approval_annotations() -> None:
    unrelated = {**BASE, "ops.superloop.dev/other": "x", "team": "y"}
    assert intents.parse_approval(unrelated) == intents.parse_approval(BASE)


def test_the_admission_policy_watches_exactly_the_approval_annotations() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    start = helpers.index('{{- define "superloop-ops.approvalAnnotations" -}}')
    block = helpers[start : helpers.index("{{- end -}}", start)]
    listed = yaml.safe_load(block.split("-}}", 1)[1])
    assert listed == list(model_intent.APPROVAL_ANNOTATIONS)
    policy = (CHART / "templates" / "admissionpolicy.yaml").read_text()
    assert 'include "superloop-ops.approvalAnnotations"' in policy
