"""Fleet runbook commands (registry, reconcile fan-out, policy, handoff, status) on a journal."""
