"""``superloop-ops alert-sink-config``: validate the alert sink catalog and resolve routes.

Fail-closed by default: an enabled sink whose secret env var is unset is an error
(``--no-env-check`` is for dry-run inspection of a catalog only).
"""

from __future__ import annotations

import argparse
import os

from superloop_ops.cli._common import emit
from superloop_ops.core.alerts import sink_catalog
from superloop_ops.engine.alerts import alert_delivery

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-file", default="", help="alert sink catalog (else $OPS_MANAGER_ALERT_SINKS_FILE)"
    )
    parser.add_argument("--category", default="", help="escalation category to resolve")
    parser.add_argument("--severity", default="", help="event severity: info | warning | critical")
    parser.add_argument("--no-env-check", action="store_true", help="skip the enabled-sink secret check")
    parser.add_argument("--list-sinks", action="store_true", help="print id, type, enabled per sink")
    parser.add_argument("--pretty", action="store_true", help="indent the JSON output")


def run(args: argparse.Namespace) -> int:
    sink_catalog.validate_severity_args(
        category=args.category or None, severity=args.severity or None, list_sinks=args.list_sinks
    )
    source_file = alert_delivery.resolve_alert_sinks_path(args.config_file or None)
    catalog = alert_delivery.fetch_sink_catalog(source_file)
    env = dict(os.environ)
    env_check = not args.no_env_check
    if env_check:
        sink_catalog.ensure_secrets_present(catalog, env)
    if args.list_sinks:
        for line in sink_catalog.build_sink_listing(catalog):
            print(line)
        return 0
    if args.category:
        document = sink_catalog.build_route_resolution(
            catalog,
            args.category,
            args.severity or None,
            source_file=source_file,
            env=env,
            env_check=env_check,
        )
    else:
        document = sink_catalog.build_catalog_summary(
            catalog, source_file=source_file, env=env, env_check=env_check
        )
    emit(document, args.pretty)
    return 0
