"""Monitoring from values: nothing by default; the PrometheusRule, monitors and dashboard come from
monitoring/ unchanged (only the runbook links move)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.monitoring import DASHBOARD, RULES

from .chart import CHART, FULLNAME, of_kind, one, render

ALL_ON: dict[str, Any] = {
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True, "folder": "Messaging"},
        "runbookBaseUrl": "https://wiki.example.org/outbound/runbook.md",
    }
}
RUNBOOK_PATH = "runbook_url: docs/runbook.md#"


def test_nothing_needs_prometheus_operator_by_default() -> None:
    docs = render()
    assert not [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not of_kind(docs, "ConfigMap")
    api = one(docs, "Deployment", f"{FULLNAME}-api")["spec"]["template"]["metadata"]["annotations"]
    assert api == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/actuator/prometheus",
    }


def test_prometheus_rule_is_the_alert_rules_with_runbook_links_rebased() -> None:
    [rule] = of_kind(render(ALL_ON), "PrometheusRule")
    source = RULES.read_text().replace(RUNBOOK_PATH, "runbook_url: https://wiki.example.org/outbound/runbook.md#")
    assert rule["spec"]["groups"] == yaml.safe_load(source)["groups"]
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert urls
    assert all(url.startswith("https://wiki.example.org/outbound/runbook.md#") for url in urls)
    # The alerts' own Go templates reach Prometheus untouched (Helm must not evaluate them).
    summaries = [r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert any("{{ $value }}" in summary for summary in summaries)


def test_monitors_scrape_the_api_the_workers_the_dispatchers_and_the_operator() -> None:
    docs = render(ALL_ON)
    [service_monitor] = of_kind(docs, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "prom"
    assert service_monitor["spec"]["endpoints"][0]["path"] == "/actuator/prometheus"
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"  # the API port serves no metrics
    selector = service_monitor["spec"]["selector"]["matchLabels"].items()
    assert selector <= one(docs, "Service", f"{FULLNAME}-api-metrics")["metadata"]["labels"].items()
    assert not selector <= one(docs, "Service", f"{FULLNAME}-api")["metadata"]["labels"].items()
    monitors = {m["metadata"]["name"]: m for m in of_kind(docs, "PodMonitor")}
    workers = monitors[f"{FULLNAME}-workers"]["spec"]
    # The labels the operator puts on worker pods (operator reconcile/workload.py).
    assert workers["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "outbound-sender",
        "app.kubernetes.io/component": "worker",
    }
    assert workers["namespaceSelector"] == {"matchNames": ["outbound"]}
    callbacks = monitors[f"{FULLNAME}-callbacks"]["spec"]
    pods = one(docs, "Deployment", f"{FULLNAME}-callbacks")["spec"]["template"]["metadata"]["labels"]
    assert callbacks["selector"]["matchLabels"].items() <= pods.items()
    assert callbacks["podMetricsEndpoints"][0]["path"] == "/actuator/prometheus"
    operator = monitors[f"{FULLNAME}-operator"]["spec"]["podMetricsEndpoints"][0]
    assert operator == {"port": "metrics", "path": "/metrics", "interval": "30s"}


def test_dashboard_config_map_carries_the_dashboard_and_the_sidecar_label() -> None:
    [config_map] = of_kind(render(ALL_ON), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Messaging"}
    assert json.loads(config_map["data"][DASHBOARD.name]) == json.loads(DASHBOARD.read_text())


def test_runbook_links_default_to_the_projects_runbook_and_nothing_names_a_placeholder_host() -> None:
    values = {"monitoring": {"prometheusRule": {"enabled": True}}}
    [rule] = of_kind(render(values), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    urls = {r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert all(url.startswith("docs/runbook.md#") for url in urls)
    chart_yaml = (CHART / "Chart.yaml").read_text()
    for text in (chart_yaml, RULES.read_text(), (CHART / "values.yaml").read_text()):
        assert "github.com/example" not in text
