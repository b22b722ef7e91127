"""Controllers: the operator glue of each kind, between kopf handlers and the engine.

One controller module per kind (``loop_controller``, ``fleet_controller``,
``fleet_policy_controller``, ``promotion_apply_controller``), with the Fleet's concerns beside
it (``fleet_objects``, ``owned_loops``, ``handoff_intent_objects``, ``autonomous_runner``): gather
what a pass needs from Kubernetes (through ``k8s``) and the journal, run the engine or the pure
core, and compute the desired status, child objects and Events. Only this layer and ``handlers``
read ``settings`` or talk to Kubernetes; handlers never import each other, so glue two handlers
share lives here (or in ``handlers.context`` when it is wiring).

Status writes: one writer per kind. The Fleet, FleetPolicy, HandoffIntent and PromotionApply
statuses share one mechanism (``status_writes``: whole changed top-level fields by JSON patch,
so explicit nulls in mirrored journal documents survive; skipped when unchanged); the Loop
handler patches its own status. The PromotionApply handler writes its kind's status; the Fleet
status is written by ``fleet_controller.reconcile_fleet`` (the Fleet, FleetPolicy and
PromotionApply handlers all run fleet passes), the FleetPolicy status by
``fleet_policy_controller``, every HandoffIntent status by
``handoff_intent_objects.write_intent_status`` (manual and autonomous execution record
``executing`` before their side effect).
"""
