"""Pure handoff rules: the fleet handoff plan (candidates -> control intents) and the
HandoffIntent controller's state machine and status (``handoff_intent_resource``).
"""
