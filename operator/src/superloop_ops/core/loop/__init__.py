"""Pure rules of one loop: artifacts, envelopes, cursor, lifecycle projection, health, heartbeat,
sequence, thresholds, control rules, the status surface, and the Loop controller's desired status
(``loop_resource``).
"""
