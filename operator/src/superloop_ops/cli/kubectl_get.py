"""``kubectl superloop get``: the five kinds as ``kubectl get`` shows them, plus ``--watch``.

The table's columns are the CRD's printer columns (``CrdInfo.all_columns``: Ready, Status, the
kind's own, Reasons, Age; ``-o wide`` adds the priority-1 ones such as Message), so the plugin
and ``kubectl get`` never disagree. ``-o json|yaml|name`` print what kubectl prints: one object,
or a ``List`` of them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import yaml

from superloop_ops.core.common.jsonutil import JsonObject, parse_ts
from superloop_ops.errors import OperatorError
from superloop_ops.models import ALL_KINDS
from superloop_ops.models.common import API_GROUP, CrdInfo, PrinterColumn

__all__ = [
    "OUTPUTS",
    "add_parser",
    "evaluate_jsonpath",
    "format_age",
    "render",
    "render_table",
    "resolve_kind",
    "run",
]

OUTPUTS = ("json", "yaml", "wide", "name")
_FILTER = re.compile(r'^\[\?\(@\.(\w+)=="([^"]*)"\)\]')
_FIELD = re.compile(r"^\.(\w+)")


class _Lister(Protocol):
    def get(self, plural: str, name: str) -> JsonObject: ...

    def list(
        self, plural: str, *, all_namespaces: bool = False, selector: str | None = None
    ) -> list[JsonObject]: ...

    def watch(
        self, plural: str, *, all_namespaces: bool, selector: str | None, timeout: float | None
    ) -> Iterator[tuple[str, JsonObject]]: ...


def _names(info: CrdInfo) -> set[str]:
    names = {info.plural, info.singular, info.kind.lower(), *info.short_names, info.crd_name}
    if info.kind == "HandoffIntent":
        names |= {"intent", "intents"}
    return names


def resolve_kind(name: str) -> CrdInfo:
    """The kind a ``kubectl get`` resource name means (plural, singular, kind, short name)."""
    wanted = name.lower()
    for kind in ALL_KINDS:
        if wanted in _names(kind.crd):
            return kind.crd
    known = ", ".join(k.crd.plural for k in ALL_KINDS)
    raise OperatorError(f'the server doesn\'t have a resource type "{name}" in {API_GROUP} (known: {known})')


def evaluate_jsonpath(obj: Any, path: str) -> Any:
    """The subset of JSONPath printer columns use: ``.a.b`` and ``[?(@.key=="value")]`` filters."""
    current: list[Any] = [obj]
    rest = path
    while rest:
        field, flt = _FIELD.match(rest), _FILTER.match(rest)
        if field:
            current = [c.get(field.group(1)) for c in current if isinstance(c, Mapping)]
            rest = rest[field.end() :]
        elif flt:
            key, value = flt.groups()
            current = [
                item
                for c in current
                if isinstance(c, list)
                for item in c
                if isinstance(item, Mapping) and str(item.get(key)) == value
            ]
            rest = rest[flt.end() :]
        else:
            raise ValueError(f"unsupported JSONPath {path!r} at {rest!r}")
    values = [c for c in current if c is not None]
    return values[0] if values else None


def format_age(created: Any, now: dt.datetime) -> str:
    """kubectl's short age: 45s, 12m, 3h, 5d."""
    moment = parse_ts(created)
    if moment is None:
        return "<unknown>"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(obj: Mapping[str, Any], column: PrinterColumn, now: dt.datetime) -> str:
    value = evaluate_jsonpath(obj, column.json_path)
    if column.type == "date":
        return format_age(value, now)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _columns(info: CrdInfo, wide: bool) -> list[PrinterColumn]:
    return [c for c in info.all_columns() if wide or not c.priority]


def render_table(
    info: CrdInfo, items: Iterable[Mapping[str, Any]], *, wide: bool, all_namespaces: bool, now: dt.datetime
) -> list[list[str]]:
    """Header and rows as ``kubectl get`` lays them out (NAMESPACE first with ``-A``)."""
    columns = _columns(info, wide)
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + [c.name.upper() for c in columns]
    rows = [header]
    for obj in items:
        meta = obj.get("metadata") or {}
        lead = [str(meta.get("namespace", ""))] if all_namespaces else []
        rows.append(lead + [str(meta.get("name", ""))] + [_cell(obj, c, now) for c in columns])
    return rows


def format_rows(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def render(
    info: CrdInfo,
    items: Sequence[Mapping[str, Any]],
    *,
    output: str | None,
    single: bool,
    all_namespaces: bool,
    now: dt.datetime,
) -> str:
    """The text ``kubectl get`` would print for these objects in this output format."""
    if output == "name":
        return "\n".join(
            f"{info.singular}.{API_GROUP}/{(o.get('metadata') or {}).get('name')}" for o in items
        )
    if output in ("json", "yaml"):
        doc: Any = dict(items[0]) if single else {"apiVersion": "v1", "kind": "List", "items": list(items)}
        return (
            json.dumps(doc, indent=4) if output == "json" else yaml.safe_dump(doc, sort_keys=False).rstrip()
        )
    if not items:
        return ""
    return format_rows(
        render_table(info, items, wide=output == "wide", all_namespaces=all_namespaces, now=now)
    )


def add_parser(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    get = sub.add_parser(
        "get",
        parents=list(parents),
        help="list or show objects of a kind (loops, fleets, fleetpolicies, intents, promotionapplies)",
    )
    get.add_argument(
        "kind", help="loops | fleets | fleetpolicies | handoffintents (intents, hoi) | promotionapplies"
    )
    get.add_argument("name", nargs="?", default=None)
    get.add_argument("-w", "--watch", action="store_true", help="after listing, print each change")
    get.add_argument(
        "--request-timeout", type=float, default=None, help="stop watching after this many seconds"
    )


def run(cluster: _Lister, args: argparse.Namespace, now: dt.datetime) -> int:
    info = resolve_kind(args.kind)
    all_ns = bool(args.all_namespaces) and args.name is None
    if args.watch:
        return _watch(cluster, info, args, now)
    if args.name is not None:
        items = [cluster.get(info.plural, args.name)]
    else:
        items = cluster.list(info.plural, all_namespaces=all_ns, selector=args.selector)
    text = render(
        info, items, output=args.output, single=args.name is not None, all_namespaces=all_ns, now=now
    )
    if text:
        print(text)
    elif args.output not in ("json", "yaml"):
        where = "any namespace" if all_ns else f"{getattr(cluster, 'namespace', '')} namespace"
        print(f"No resources found in {where}.", file=sys.stderr)
    return 0


def _watch(cluster: _Lister, info: CrdInfo, args: argparse.Namespace, now: dt.datetime) -> int:
    """One line per event, the header once (tables), like ``kubectl get -w``."""
    all_ns = bool(args.all_namespaces)
    header_done = False
    events = cluster.watch(
        info.plural, all_namespaces=all_ns, selector=args.selector, timeout=args.request_timeout
    )
    for _, obj in events:
        now = dt.datetime.now(dt.UTC)
        if args.name is not None and (obj.get("metadata") or {}).get("name") != args.name:
            continue
        if args.output in (None, "wide"):
            rows = render_table(info, [obj], wide=args.output == "wide", all_namespaces=all_ns, now=now)
            lines = format_rows(rows).splitlines()
            print("\n".join(lines if not header_done else lines[1:]), flush=True)
            header_done = True
        else:
            print(
                render(info, [obj], output=args.output, single=True, all_namespaces=all_ns, now=now),
                flush=True,
            )
    return 0
