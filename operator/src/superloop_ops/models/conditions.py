"""Condition types of every kind: who sets each one, and what its status means.

Conditions follow metav1.Condition (``models.common.Condition`` is their schema). ``Ready``
summarises the other conditions of the same object; a condition is ``Unknown`` until its
controller has an answer; ``lastTransitionTime`` moves only when ``status`` changes; ``reason`` is
the spec's snake_case reason code in CamelCase (``health_degraded`` → ``HealthDegraded``), so that
``kubectl describe`` and the journal speak the same vocabulary.

These are names only. The one set of helpers that builds condition lists is
``core.common.status_conditions`` (``build_conditions``, ``find_condition``, ``camel_reason``); each
kind's pure status builder (``core/<kind>/*_resource.py``) calls it, and the kind's handler writes the
result in its single status patch.
"""

from __future__ import annotations

__all__ = [
    "APPLIED",
    "APPROVED",
    "DEGRADED",
    "DIVERGED",
    "EXECUTED",
    "HEALTHY",
    "READY",
    "SUPPRESSIONS_EXPIRING",
]

READY = "Ready"
"""The summary condition of a Loop, a Fleet and a FleetPolicy.

- Loop: set by the Loop controller after every pass (``core.loop.loop_resource``). True
  (``ReconcileSucceeded``) when the last pass ingested the artifacts; False with the failure code
  (e.g. ``SnapshotUnavailable``), ``Suspended``, or the blocking reason (e.g. ``SourceNotFound``);
  Unknown (``NotReconciled``) before the first pass.
- Fleet: set by the Fleet controller after every fleet pass (``core.fleet.fleet_resource``). True
  (``FleetReconciled``) when the pass completed; False with the blocking reason.
- FleetPolicy: set by the Fleet controller when a Fleet evaluates the policy
  (``core.fleet.fleet_resource``). True (``PolicyEvaluated``); False (``AwaitingFleetPass``) until a
  Fleet has evaluated it, or with the blocking reason.
"""

HEALTHY = "Healthy"
"""Loop only: set by the Loop controller from the pass's health document. True (``Healthy``) iff
the health status is healthy; False with the lead health reason code (e.g. ``HeartbeatStale``);
Unknown (``HealthUnknown``, ``NotReconciled``) while there is no health document."""

DEGRADED = "Degraded"
"""The negative of ``Healthy`` for a Loop, and the fleet-wide health of a Fleet.

- Loop: set by the Loop controller with ``Healthy``. True when health is degraded or critical
  (reason = the lead health reason code); False (``Healthy``); Unknown without a health document.
- Fleet: set by the Fleet controller from the fleet state's reason codes. True with the lead code
  (``FleetReconcileFailed``, ``FleetPartialFailure``, ``FleetHealthCritical``,
  ``FleetHealthDegraded``, …); False (``FleetHealthy``); Unknown (``NotReconciled``) before a pass.
"""

DIVERGED = "Diverged"
"""Loop only: set by the Loop controller from the projection's divergence flags and profile drift.
True (``DivergenceDetected``, ``ProfileDriftDetected``) while a divergence or an active drift is
observed; False (``NoDivergence``); Unknown (``NoProjection``) without a lifecycle projection."""

APPROVED = "Approved"
"""HandoffIntent only. Set by the HandoffIntent controller (``core.handoff.handoff_intent_resource``):
False (``AwaitingApproval``, ``ApprovalInvalid``) while the approval annotations are missing or
invalid, True (``Approved``) once an operator approved. Set by the Fleet controller's autonomous runner
(``core.fleet.fleet_resource``): True (``AutonomousPolicy``) when the guarded_auto policy made
the intent eligible."""

EXECUTED = "Executed"
"""HandoffIntent only, set by the same two controllers as ``Approved`` from the control outcome.
False (``NotExecuted``) before execution; Unknown (``Executing``) while executing and
(``ExecutionAmbiguous``) when the outcome is ambiguous; True (``Executed``, ``ExecutedUnconfirmed``)
once executed; False (``ExecutionFailed``) when the control failed."""

APPLIED = "Applied"
"""PromotionApply only: set by the PromotionApply controller (``core.promotion.promotion_apply_resource``).
True (``Applied``, ``Replayed``) once the apply record is written or replayed; False (``DryRun``,
or the rejecting reason, e.g. the decision gate's); Unknown while pending."""

SUPPRESSIONS_EXPIRING = "SuppressionsExpiring"
"""FleetPolicy only: set with ``Ready`` from the spec's suppressions and their terms
(``core.fleet.suppressions``). True (``SuppressionsExpiring``) while a suppression expires within
``suppressionLimits.expiringWithinSeconds``; False (``SuppressionsExpired``) when none does but
some have expired and no longer apply, else False (``NoneExpiring``)."""
