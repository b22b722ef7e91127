"""superloop-ops: a Kubernetes operator that supervises fleets of AI coding-agent loop runs.

Layers (enforced by import-linter, see pyproject.toml; docs/architecture.md draws them):
``main`` -> ``handlers`` | ``cli`` -> ``controllers`` | ``service`` -> ``engine`` ->
``k8s`` | ``transports`` | ``sim`` | ``journal`` -> ``core`` -> ``models``.
``models`` and ``core`` are pure; each layer is grouped by kind (loop, fleet, handoff,
promotion, alerts, tuning).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
