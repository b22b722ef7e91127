"""superloop-ops: a Kubernetes operator that supervises fleets of AI coding-agent loop runs.

Layers (enforced by import-linter, see pyproject.toml):
``models`` and ``core`` are pure; ``journal``, ``transports``, ``service``, ``sim`` and ``k8s``
do I/O; ``engine`` composes them into one reconcile or control pass; ``cli`` and ``handlers``
are the front ends.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
