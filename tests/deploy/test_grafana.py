"""deploy/grafana/: the dashboard's and the alert rules' queries use only metrics the
engine exports, and every query parses (the real PromQL parser, through promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from engine.metrics import Metrics
from tests.deploy.promql import exported_names, metric_names, substitute_grafana, unknown_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "journey-engine.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            # label_values(<series selector>, <label>): the selector is PromQL.
            found = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
            assert found, var["query"]
            exprs.append(found.group(1))
    return exprs


def alert_exprs() -> list[str]:
    """``expr:`` values of alerts.yml (inline, or a ``|`` block of deeper-indented lines)."""
    lines = ALERTS.read_text(encoding="utf-8").splitlines()
    exprs: list[str] = []
    for i, line in enumerate(lines):
        key = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if key is None:
            continue
        indent, value = len(key.group(1)), key.group(2)
        if value not in ("|", ">"):
            exprs.append(value)
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        exprs.append(" ".join(b for b in block if b))
    return exprs


def engine_names() -> set[str]:
    return exported_names(Metrics(CollectorRegistry()).registry)


# ------------------------------------------------------------------ the name finder


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (le) (rate(a_bucket{job="w", x=~"y|z"}[5m]))', {"a_bucket"}),
        ("histogram_quantile(0.99, sum(rate(h_bucket[1m])) by (le))", {"h_bucket"}),
        ("a / on(instance) group_left(model) b offset 5m", {"a", "b"}),
        ('sum(a{stage="by (x)"}) without (stage) > 1e-9 and b', {"a", "b"}),
        ('{__name__="c_total", job="w"}', {"c_total"}),
        ("rate(x_total[$__rate_interval]) * 100", {"x_total"}),
    ],
)
def test_metric_names_are_found_and_nothing_else(expr: str, names: set[str]) -> None:
    assert metric_names(substitute_grafana(expr)) == names


def test_suffixes_must_match_the_metric_type() -> None:
    exported = engine_names()
    exprs = [
        "rate(journey_events_total[5m])",
        "journey_events",  # a counter without _total
        "journey_customers_bucket",  # a gauge has no buckets
        "journey_time_in_stage_seconds",  # a histogram is only its _bucket/_sum/_count
        "rate(journey_time_in_stage_seconds_count[5m])",
        "process_resident_memory_bytes",
    ]
    assert unknown_names(exprs, exported) == {
        "journey_events": {"journey_events"},
        "journey_customers_bucket": {"journey_customers_bucket"},
        "journey_time_in_stage_seconds": {"journey_time_in_stage_seconds"},
    }


# ------------------------------------------------------------------ the dashboard


def test_dashboard_and_alert_queries_use_only_exported_metrics() -> None:
    exprs = dashboard_exprs() + alert_exprs()
    assert unknown_names(exprs, engine_names()) == {}
    used = set().union(*(metric_names(substitute_grafana(e)) for e in exprs))
    # The dashboard shows every family of the engine's own metrics.
    families = {f.name for f in Metrics(CollectorRegistry(), process=False).registry.collect()}
    shown = {f for f in families if any(name.startswith(f) for name in used)}
    assert shown == families


def test_alert_expressions_are_all_read() -> None:
    text = ALERTS.read_text(encoding="utf-8")
    assert len(alert_exprs()) == text.count("- alert:")


def test_every_query_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH: run deploy/bootstrap.sh (Debian package prometheus)")
    exprs = [substitute_grafana(e) for e in dashboard_exprs()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
    path.write_text(
        json.dumps({"groups": [{"name": "d", "rules": [{"record": "x:y", "expr": "sum(("}]}]})
    )
    broken = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert broken.returncode != 0


def test_dashboard_has_the_operators_sections() -> None:
    data = dashboard()
    rows = [p["title"] for p in data["panels"] if p["type"] == "row"]
    for section in (
        "Throughput, errors and latency",
        "Lag and partitions",
        "Funnel",
        "Stage flow",
        "Triggers and policy decisions",
    ):
        assert section in rows
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["refId"]


def test_provisioning_points_at_the_dashboard_and_the_data_source() -> None:
    datasource = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    provider = (GRAFANA / "provisioning" / "dashboards" / "journey.yml").read_text()
    assert "type: prometheus" in datasource
    assert "uid: prometheus" in datasource
    assert "path: /var/lib/grafana/dashboards" in provider
    templating = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert templating["datasource"]["query"] == "prometheus"
    assert templating["datasource"]["current"]["value"] == "prometheus"
