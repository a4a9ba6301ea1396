"""Static checks of monitoring/: alert rules cover the runbook, link to it, and never sum a gauge that
every pod exports; the dashboard is importable and has the runbook's panels; the PrometheusRule copy
is current."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import pytest
import yaml

from tests.monitoring import (
    DATABASE_GAUGES,
    DOCS_RUNBOOK,
    MONITORING,
    PROMETHEUS_RULE,
    alert_rules,
    dashboard,
    dashboard_expressions,
    dashboard_panels,
    markdown_anchors,
)

# The runbook's alerts (shared/runbook.md) and the ones the issue adds, by alert name.
RUNBOOK_ALERTS = {
    "High Queue Depth Alert": "OutboundHighQueueDepth",
    "Dead Letter Growth Alert": "OutboundDeadLetterGrowth",
    "High Failure Rate Alert": "OutboundHighFailureRate",
    "WhatsApp Quota High Usage Alert": "WhatsAppQuotaHighUsage",
    "Stuck Messages Alert": "OutboundStuckMessages",
    "High Delivery Latency Alert": "OutboundHighDeliveryLatency",
    "worker inactivity": "OutboundWorkerInactive",
    "circuit open": "OutboundProviderCircuitOpen",
}
# kube-prometheus routes on severity; the runbook's priority travels as its own label.
SEVERITY_OF_PRIORITY = {"P0": "critical", "P1": "critical", "P2": "warning", "P3": "info"}
# What the operator exports (operator/outbound_operator/metrics.py), for its own alerts.
OPERATOR_ALERTS = {"OutboundOperatorDown", "OutboundOperatorReconcileErrors", "OutboundChannelProviderNotReady"}


def render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("monitoring_render", MONITORING / "render.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_runbook_alert_has_a_rule() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert set(RUNBOOK_ALERTS.values()) <= names


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['priority']}")
def test_rule_has_severity_priority_summary_and_a_runbook_link_that_resolves(rule: dict[str, object]) -> None:
    labels, annotations = rule["labels"], rule["annotations"]
    assert isinstance(labels, dict)
    assert isinstance(annotations, dict)
    assert labels["severity"] == SEVERITY_OF_PRIORITY[labels["priority"]]
    assert annotations["summary"]
    assert annotations["description"]
    url = str(annotations["runbook_url"])
    assert url.startswith("docs/runbook.md#"), "the project's own runbook (render.py and the chart rebase it)"
    assert "example" not in url
    anchor = url.split("#", 1)[1]
    assert anchor in markdown_anchors(DOCS_RUNBOOK.read_text()), f"docs/runbook.md has no section #{anchor}"


def test_runbook_thresholds_and_priorities() -> None:
    by_name: dict[str, list[dict[str, object]]] = {}
    for rule in alert_rules():
        by_name.setdefault(str(rule["alert"]), []).append(rule)

    def priorities(name: str) -> set[str]:
        return {r["labels"]["priority"] for r in by_name[name]}  # type: ignore[index]

    assert priorities("OutboundDeadLetterGrowth") == {"P1", "P2"}  # runbook: DLQ > 500 is P1
    assert priorities("OutboundHighQueueDepth") == {"P2"}
    assert priorities("OutboundHighFailureRate") == {"P2"}
    assert priorities("OutboundAllSendsFailing") == {"P0"}
    assert priorities("OutboundOperatorDown") == {"P1"}
    assert {r["labels"]["threshold"] for r in by_name["WhatsAppQuotaHighUsage"]} == {"70", "85", "95"}  # type: ignore[index]
    assert {r["for"] for r in by_name["OutboundHighFailureRate"]} == {"15m"}
    exprs = " ".join(str(r["expr"]) for rules in by_name.values() for r in rules)
    for threshold in ("> 1000", "> 100", "> 500", "> 30", "> 60", "> 0.05", ">= 0.70", ">= 0.85", ">= 0.95"):
        assert threshold in exprs


def _database_gauge_uses(expr: str) -> list[tuple[str, str]]:
    """(gauge, the text before it) for every use of a database-derived gauge in an expression."""
    uses = []
    for gauge in DATABASE_GAUGES:
        for match in re.finditer(rf"\b{gauge}\b(?!_)", expr):
            uses.append((gauge, expr[: match.start()]))
    return uses


def _aggregated_by_max(before: str) -> bool:
    return bool(re.search(r"max(\s+by\s*\([^)]*\))?\s*\(\s*$", before))


def test_database_gauges_are_never_summed_across_pods() -> None:
    """Every pod exports the same global value: rules and panels aggregate with max()."""
    expressions = [str(rule["expr"]) for rule in alert_rules()] + [e for _, e in dashboard_expressions()]
    for expr in expressions:
        for gauge, before in _database_gauge_uses(expr):
            assert _aggregated_by_max(before), f"{gauge} must be aggregated with max() in: {expr}"


def test_dashboard_is_importable_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "outbound-messaging"  # the runbook's /grafana/d/outbound-messaging
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_dashboard_has_the_runbook_panels() -> None:
    titles = {panel["title"] for panel in dashboard_panels()}
    assert {
        "Queue Depth by Status",
        "Delivery Latency Percentiles",
        "Failure Rate by Error Code",
        "Dead Letter Queue Size",
        "WhatsApp Quota Consumption",
        "Provider Success Rate",
        "Circuit State",
    } <= titles
    dlq = next(p for p in dashboard_panels() if p["title"] == "Dead Letter Queue Size")
    steps = dlq["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 100, 500]


def test_prometheus_rule_copy_is_current() -> None:
    assert PROMETHEUS_RULE.read_text() == render_module().render(), "run: python monitoring/render.py"


def test_prometheus_rule_wraps_the_same_groups() -> None:
    wrapped = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert wrapped["apiVersion"] == "monitoring.coreos.com/v1"
    assert wrapped["kind"] == "PrometheusRule"
    plain = yaml.safe_load((MONITORING / "alerts" / "outbound-messaging.rules.yaml").read_text())
    assert wrapped["spec"]["groups"] == plain["groups"]


def test_runbook_base_can_be_changed_for_a_deployment() -> None:
    text = render_module().render(runbook_base="https://wiki.internal/runbook.md", namespace="messaging")
    document = yaml.safe_load(text)
    assert document["metadata"]["namespace"] == "messaging"
    urls = {r["annotations"]["runbook_url"] for g in document["spec"]["groups"] for r in g["rules"]}
    assert all(url.startswith("https://wiki.internal/runbook.md#") for url in urls)


def test_operator_alerts_read_only_metrics_the_operator_exports() -> None:
    from prometheus_client import generate_latest

    from outbound_operator.metrics import OperatorMetrics

    metrics = OperatorMetrics()
    metrics.ready("ns", "sms", {"conditions": [{"type": "Ready", "status": "False"}]})
    exported = generate_latest(metrics.registry).decode()
    rules = {str(r["alert"]): str(r["expr"]) for r in alert_rules() if r["alert"] in OPERATOR_ALERTS}
    assert set(rules) == OPERATOR_ALERTS
    samples = set(re.findall(r"^([a-z_]+)\{", exported, re.MULTILINE))
    for alert, expr in rules.items():
        names = set(re.findall(r"\b(outbound_operator_[a-z_]+)", expr))
        assert names, alert
        assert names <= samples, f"{alert}: {names - samples} not exported by the operator"
