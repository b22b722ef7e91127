"""Pure tuning rules: telemetry summary (profile recommendation) and profile drift."""
