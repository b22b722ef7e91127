"""A Secret is usable by the operator only when it opts in by label (issue 10 item 6).

``edge.read_secret_value`` is what ``KubernetesEdge.fetch_secret_value`` applies to the Secret it
read: plain data in, a value or a reason-coded refusal out.
"""

from __future__ import annotations

import base64

import pytest

from superloop_ops.errors import SecretNotUsableError
from superloop_ops.k8s import edge
from superloop_ops.models import common

DATA = {"token": base64.b64encode(b"s3cret\n").decode()}


def test_an_opted_in_secret_yields_its_value() -> None:
    labels = {common.SECRET_OPT_IN_LABEL: common.SECRET_OPT_IN_VALUE}
    assert edge.read_secret_value("team-a", "svc", "token", labels=labels, data=DATA) == "s3cret"


@pytest.mark.parametrize(
    "labels",
    [None, {}, {common.SECRET_OPT_IN_LABEL: "someone-else"}, {"app": "superloop-ops"}],
)
def test_a_secret_without_the_opt_in_label_is_refused(labels: dict[str, str] | None) -> None:
    with pytest.raises(SecretNotUsableError) as refused:
        edge.read_secret_value("team-a", "svc", "token", labels=labels, data=DATA)
    assert refused.value.reason_code == "secret_not_opted_in"
    assert "ops.superloop.dev/usable-by=superloop-ops" in str(refused.value)
    assert "s3cret" not in str(refused.value)
