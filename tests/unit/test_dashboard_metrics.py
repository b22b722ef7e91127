"""The Grafana dashboard and the alert rules ask only for metrics the operator really exports.

The exported names come from the registry itself: the operator's metric families (loop, fleet,
promotion, shadow) are instantiated and collected, and each family's sample names are derived from its
type (``_total`` for counters, ``_bucket``/``_count``/``_sum`` for histograms). Every PromQL
expression of the dashboard and of the chart's PrometheusRule is reduced to the metric names it
selects, which must all be in that set; promtool then parses each dashboard expression.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from superloop_ops import metrics as m
from superloop_ops.metrics_fleet import fetch_fleet_metrics
from superloop_ops.metrics_promotion import fetch_promotion_metrics
from superloop_ops.metrics_shadow import fetch_shadow_metrics
from superloop_ops.metrics_suppressions import fetch_suppression_metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "superloop-ops.json"
CHART_DASHBOARD = ROOT / "helm" / "superloop-ops" / "dashboards" / "superloop-ops.json"
RULES_TEMPLATE = ROOT / "helm" / "superloop-ops" / "templates" / "prometheusrule.yaml"
# Not ours: Prometheus' own scrape health.
FOREIGN = {"up"}
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
    "info": ("_info",),
}
_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def exported_names() -> set[str]:
    base = m.build_metrics()
    fetch_fleet_metrics(base)
    fetch_promotion_metrics(base)
    fetch_suppression_metrics(base)
    fetch_shadow_metrics(base)
    names = set()
    for family in base.registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, ranges, groupings removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in _WORDS:
            continue
        names.add(word)
    return names


def _dashboard_exprs() -> list[str]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    # a variable's label_values(metric, label): the metric is its first argument
    exprs += [
        re.sub(r"label_values\((\w+),.*\)", r"\1", v["definition"])
        for v in board["templating"]["list"]
        if v.get("definition")
    ]
    return exprs


def _rule_exprs() -> list[str]:
    exprs = re.findall(r"^\s+expr: (.+)$", RULES_TEMPLATE.read_text(), flags=re.M)
    return [re.sub(r"\{\{[^}]*\}\}", "0", e) for e in exprs]  # template values are numbers or strings


def test_the_extractor_sees_what_a_query_selects() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{ns=~"$namespace"}[5m]))) / on(x) b > bool 0'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert metric_names('absent(up{service="x"} == 1)') == {"up"}


def test_the_registry_exports_the_new_families() -> None:
    names = exported_names()
    assert {"superloop_ops_build_info", "superloop_ops_reconcile_passes_total"} <= names
    assert "superloop_ops_reconcile_duration_seconds_bucket" in names


@pytest.mark.parametrize("source", ["dashboard", "alert rules"])
def test_every_queried_metric_is_exported(source: str) -> None:
    exprs = _dashboard_exprs() if source == "dashboard" else _rule_exprs()
    assert len(exprs) >= (20 if source == "dashboard" else 9)
    exported = exported_names() | FOREIGN
    queried = set().union(*(metric_names(e) for e in exprs))
    assert queried, "no metric names found"
    assert queried - exported == set(), f"{source} queries metrics the operator does not export"


def test_the_dashboard_covers_what_operators_watch() -> None:
    board = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == [
        "Fleet posture",
        "Loop health and lifecycle",
        "Handoff intents",
        "Alert deliveries",
        "Reconcile",
        "Suppressions",
        "Shadow autonomy",
    ]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert CHART_DASHBOARD.read_bytes() == DASHBOARD.read_bytes()


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/install-tools.sh installs it"
    rules = [
        {
            "record": f"dashboard:query{i}",
            "expr": e.replace("$__rate_interval", "5m").replace("$namespace", ".*"),
        }
        for i, e in enumerate(_dashboard_exprs())
    ]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_metrics_reference_lists_every_family() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    base = m.build_metrics()
    fetch_fleet_metrics(base)
    fetch_promotion_metrics(base)
    fetch_suppression_metrics(base)
    fetch_shadow_metrics(base)
    for family in base.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in text, f"docs/metrics.md does not describe {name}"
