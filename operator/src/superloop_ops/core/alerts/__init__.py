"""Pure alerting rules: escalation rows of a pass, the sink catalog, dispatch planning."""
