"""Loop runbook commands: one reconcile pass, control execution, the status read, tuning."""
