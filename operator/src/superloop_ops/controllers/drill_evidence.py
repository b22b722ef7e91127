"""Drill evidence for the operator's promotion gates: the FleetPolicy's ConfigMap, when it names one.

Nothing in Kubernetes can write the journal file ``drills/promotion.v1.json`` on the
operator's state volume, so a FleetPolicy may name a ConfigMap instead
(``spec.promotion.drillEvidenceConfigMapRef``); people record drills into it with
``kubectl superloop drill record``. Reading it never fails an evaluation: a missing ConfigMap
or key is missing evidence (``promotion_drill_state_missing``), and an unreadable one (RBAC,
API server down) is treated the same way, fail closed, with a warning in the log.
"""

from __future__ import annotations

import logging

from superloop_ops.core.promotion import drill_records
from superloop_ops.engine.promotion.promotion_commands import DrillEvidenceText
from superloop_ops.errors import OperatorError
from superloop_ops.k8s.edge import KubeEdge, ObjectNotFoundError
from superloop_ops.models.fleet_policy import DrillEvidenceConfigMapRef, FleetPolicy

__all__ = ["fetch_drill_evidence", "find_drill_evidence_ref"]

log = logging.getLogger(__name__)


def find_drill_evidence_ref(policy: FleetPolicy | None) -> DrillEvidenceConfigMapRef | None:
    """The ConfigMap the policy names for drill evidence, or None (read the journal file)."""
    if policy is None or policy.spec.promotion is None:
        return None
    return policy.spec.promotion.drill_evidence_config_map_ref


def fetch_drill_evidence(
    edge: KubeEdge, namespace: str, policy: FleetPolicy | None
) -> DrillEvidenceText | None:
    """The ConfigMap's text (None when absent or unreadable); None when the policy names none."""
    ref = find_drill_evidence_ref(policy)
    if ref is None:
        return None
    source = drill_records.compute_config_map_source(namespace, ref.name, ref.key)
    try:
        text: str | None = edge.fetch_config_map_value(namespace, ref.name, ref.key)
    except ObjectNotFoundError:
        text = None
    except OperatorError as exc:
        log.warning("drill evidence %s unreadable, treated as missing: %s", source, exc)
        text = None
    return DrillEvidenceText(source=source, text=text)
