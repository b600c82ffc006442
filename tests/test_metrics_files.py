"""deploy/prometheus.yml and deploy/grafana-dashboard.json name what GET /metrics serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
METRICS = {"buildhook_builds_total", "buildhook_build_duration_seconds", "buildhook_queue_depth",
           "buildhook_queue_wait_seconds", "buildhook_webhook_deliveries_total", "buildhook_deployments_total",
           "buildhook_outbound_deliveries_total"}


def test_the_scrape_config_reads_metrics_with_a_bearer_token():
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
    assert job["static_configs"][0]["targets"] == ["web:8000"]  # the web service of docker-compose.yml


def test_the_dashboard_charts_every_metric_and_only_those():
    dashboard = json.loads((ROOT / "deploy/grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {re.sub(r"_(bucket|count|sum)$", "", name) for expr in exprs for name in re.findall(r"buildhook_\w+", expr)}
    assert named == METRICS
    documented = (ROOT / "README.md").read_text()
    assert all(f"`{name}" in documented for name in METRICS)


def test_the_readme_lists_exactly_the_build_states_counted():
    """buildhook_builds_total counts every final state (builder.metrics.measured, webhooks/build_actions.py)."""
    from builder.db.models import BuildState

    [row] = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("| `buildhook_builds_total`")]
    what_it_counts = row.split(" | ")[2]
    listed = [word for word in re.findall(r"`(\w+)`", what_it_counts) if word in {s.value for s in BuildState}]
    assert sorted(set(listed)) == sorted(state.value for state in BuildState if state.finished)
