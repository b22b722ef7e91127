"""Promotion runbook commands (gates, CI, apply, orchestrate) on a fleet journal."""
