"""The monitoring assets (monitoring/) as test data: alert rules, promtool tests, the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
RULES = MONITORING / "alerts" / "outbound-messaging.rules.yaml"
PROMETHEUS_RULE = MONITORING / "alerts" / "outbound-messaging.prometheusrule.yaml"
RULE_TESTS = MONITORING / "tests" / "outbound-messaging.test.yaml"
DASHBOARD = MONITORING / "dashboards" / "outbound-messaging.json"
DOCS_RUNBOOK = ROOT / "docs" / "runbook.md"

# Grafana's variables, replaced the way Grafana would before a query reaches Prometheus.
GRAFANA_VARIABLES = {"${channel:regex}": ".*", "$__rate_interval": "1m", "$__interval": "15s"}

# Gauges read from PostgreSQL: the same value in every pod, so they must be aggregated with max().
DATABASE_GAUGES = (
    "outbound_message_queue_depth",
    "outbound_message_dead_letter_queue_size",
    "outbound_message_stuck_messages",
    "outbound_message_oldest_due_age_seconds",
    "whatsapp_quota_used",
    "whatsapp_quota_remaining",
    "whatsapp_quota_limit",
    "whatsapp_quota_throttled",
    "whatsapp_quota_reset_timestamp_seconds",
    "outbound_metrics_last_refresh_timestamp_seconds",
)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel that shows data (rows' nested panels included, rows themselves excluded)."""
    panels = []
    for panel in dashboard()["panels"]:
        panels += panel.get("panels", [])
        if panel["type"] != "row":
            panels.append(panel)
    return panels


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL as Prometheus receives it) for every target of every panel."""
    return [
        (panel["title"], grafana_to_promql(target["expr"]))
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.MULTILINE)}
