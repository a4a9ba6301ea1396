"""The chart's documentation agrees with the chart: links resolve, commands name real objects."""

from __future__ import annotations

import re

import yaml

from tests.monitoring import DOCS_RUNBOOK, markdown_anchors

from .chart import ROOT, of_kind, render

INSTALL = ROOT / "docs" / "install.md"
README = ROOT / "README.md"


def test_runbook_internal_links_resolve() -> None:
    text = DOCS_RUNBOOK.read_text()
    anchors = markdown_anchors(text)
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in anchors, f"docs/runbook.md links to #{link}, which has no heading"


def test_runbook_and_install_guide_name_the_charts_objects() -> None:
    """With the documented release name, the Deployments and StatefulSets the docs name are the chart's."""
    values = {"channelProviders": {"twilio": {"channel": "SMS", "provider": "sandbox"}}}
    docs = render(values, release="outbound-messaging")
    deployments = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    services = {d["metadata"]["name"] for d in of_kind(docs, "Service")}
    statefulsets = {d["metadata"]["name"] for d in of_kind(docs, "StatefulSet")}
    text = DOCS_RUNBOOK.read_text() + INSTALL.read_text() + README.read_text()
    assert re.findall(r"statefulset/(outbound-messaging-[a-z-]+)", text)
    for name in re.findall(r"statefulset/(outbound-messaging-[a-z-]+)", text):
        assert name in statefulsets, name
    for name in re.findall(r"deploy/(outbound-messaging-[a-z-]+)", text):
        assert name in deployments, name
    for name in re.findall(r"svc/(outbound-messaging-[a-z-]+)", text):
        assert name in services, name


def test_argo_cd_health_checks_are_valid_config_for_both_kinds() -> None:
    block = INSTALL.read_text().split("```yaml\ndata:\n", 1)[1].split("```", 1)[0]
    config = yaml.safe_load("data:\n" + block)["data"]
    assert set(config) == {
        "resource.customizations.health.messaging.outbound.dev_ChannelProvider",
        "resource.customizations.health.messaging.outbound.dev_QuotaPolicy",
    }
    for script in config.values():
        assert '"Healthy"' in script
        assert '"Degraded"' in script
        assert script.rstrip().endswith("return hs")


def test_readme_quick_start_uses_the_charts_secret_and_release_names() -> None:
    text = README.read_text()
    section = text.split("## Install on Kubernetes (Helm)", 1)[1].split("\n## ", 1)[0]
    values = yaml.safe_load((ROOT / "charts" / "outbound-messaging" / "values.yaml").read_text())
    assert f"secret generic {values['database']['existingSecret']} --from-literal=url=" in section
    assert "helm install outbound-messaging charts/outbound-messaging" in section
    assert "--for=condition=Ready" in section
