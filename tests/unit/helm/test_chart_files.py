"""The chart's copies match their sources, `helm lint` is clean, the values reference is current."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import yaml

from .chart import CHART, KUBE_VERSION, ROOT, run_helm


def chart_sync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_sync", ROOT / "hack" / "chart_sync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("chart_sync", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_helm_lint_strict_is_clean() -> None:
    result = run_helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def test_chart_crds_are_identical_to_crds() -> None:
    chart_crds = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    # Besides ours, kopf's peering CRDs (generated from deploy/kopf-peering.yaml, checked by chart_sync).
    peering = chart_crds.pop("kopf-peering.yaml")
    assert {doc["metadata"]["name"] for doc in yaml.safe_load_all(peering) if doc} == {
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }
    assert chart_crds == {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}


def test_monitoring_copies_are_identical() -> None:
    for source in ["alerts/outbound-messaging.rules.yaml", "dashboards/outbound-messaging.json"]:
        copy = CHART / "files" / "monitoring" / source
        assert copy.read_bytes() == (ROOT / "monitoring" / source).read_bytes(), source


def test_sync_check_finds_nothing_out_of_date() -> None:
    """Copies, the CRD-derived value schemas and docs/helm-values.md (`python hack/chart_sync.py`)."""
    module = chart_sync()
    assert [str(p.relative_to(ROOT)) for p in module.stale(module.outputs())] == []
    assert module.extra_crds() == []


def test_values_reference_lists_every_leaf_value() -> None:
    text = (ROOT / "docs" / "helm-values.md").read_text()
    for value in ["database.existingSecret", "api.replicas", "operator.watchNamespaces", "monitoring.runbookBaseUrl"]:
        assert f"| `{value}` |" in text
