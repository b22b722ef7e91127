"""Alert delivery shell: load the sink catalog, dispatch escalations to HTTP sinks."""
