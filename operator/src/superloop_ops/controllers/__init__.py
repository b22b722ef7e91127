"""Controllers: the operator glue of each kind, between kopf handlers and the engine.

One module per kind (``loop_controller``, ``fleet_controller``, ``promotion_apply_controller``, ...):
gather what a pass needs from Kubernetes (through ``k8s``) and the journal, run the engine or the
pure core, and return the desired status, child objects and Events. Only this layer and
``handlers`` read ``settings`` or talk to Kubernetes; the handler of the kind writes the status.
"""
