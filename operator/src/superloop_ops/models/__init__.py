"""Custom-resource models of the ``ops.superloop.dev/v1alpha1`` API, one module per kind.

The CRDs under ``crds/`` are generated from these models by ``operator/tools/gen_crds.py``.
"""

from __future__ import annotations

from superloop_ops.models.fleet import Fleet
from superloop_ops.models.fleet_policy import FleetPolicy
from superloop_ops.models.handoff_intent import HandoffIntent
from superloop_ops.models.loop import Loop
from superloop_ops.models.promotion_apply import PromotionApply

__all__ = ["ALL_KINDS", "Fleet", "FleetPolicy", "HandoffIntent", "Loop", "PromotionApply"]

ALL_KINDS = (Loop, Fleet, FleetPolicy, HandoffIntent, PromotionApply)
