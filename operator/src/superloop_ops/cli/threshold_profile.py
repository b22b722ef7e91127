"""``superloop-ops threshold-profile``: resolve a profile from the catalog, or list the names.

Catalog precedence: ``--profiles-file``, then ``OPS_MANAGER_THRESHOLD_PROFILES_FILE``, then the
shipped catalog. This command does not read ``OPS_MANAGER_THRESHOLD_PROFILE`` (only reconcile
does), so its answer without ``--profile`` is always the catalog default.
"""

from __future__ import annotations

import argparse
import sys

from superloop_ops.cli.reconcile import print_document
from superloop_ops.core.loop import threshold_profiles
from superloop_ops.engine.loop import threshold_files

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profiles-file", default="", help="threshold profile catalog")
    parser.add_argument("--profile", default="", help="profile name (default: the catalog default)")
    parser.add_argument("--list", action="store_true", help="print the profile names, one per line")
    parser.add_argument("--pretty", action="store_true")


def run(args: argparse.Namespace) -> int:
    path = threshold_files.compute_catalog_path(args.profiles_file or None)
    catalog = threshold_files.fetch_catalog(path)
    if args.list:
        for name in threshold_profiles.compute_profile_names(catalog):
            sys.stdout.write(name + "\n")
        return 0
    resolved = threshold_profiles.compute_profile(catalog, source_file=path, profile=args.profile or None)
    print_document(resolved.to_document(), pretty=bool(args.pretty))
    return 0
