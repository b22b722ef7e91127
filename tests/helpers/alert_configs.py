"""Alert sink catalogs used by both the pure catalog tests and the CLI tests."""

from __future__ import annotations

from typing import Any

__all__ = ["WEBHOOK_URL_ENV", "enabled_webhook_config"]

WEBHOOK_URL_ENV = "OPS_MANAGER_TEST_WEBHOOK_URL"


def enabled_webhook_config(url_env: str = WEBHOOK_URL_ENV) -> dict[str, Any]:
    """One enabled webhook sink (``webhook-a``) routed for ``health_degraded`` at ``warning``."""
    return {
        "schemaVersion": "v1",
        "defaultMinSeverity": "warning",
        "sinks": {"webhook-a": {"enabled": True, "type": "webhook", "urlEnv": url_env, "timeoutSeconds": 5}},
        "routing": {
            "defaultSinks": ["webhook-a"],
            "categorySeverity": {"health_degraded": "warning"},
            "routes": [
                {
                    "category": "health_degraded",
                    "sinks": ["webhook-a"],
                    "minSeverity": "warning",
                    "enabled": True,
                }
            ],
        },
    }
