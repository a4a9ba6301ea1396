"""The pre-delete hook's pod finds the API server where Kubernetes says it is (KUBERNETES_SERVICE_HOST
and _PORT, as client-go does) instead of the name kubernetes.default.svc, which needs cluster DNS."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.unit.helm.chart import CHART


def cleanup_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_cleanup", CHART / "files" / "cleanup.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMESPACE", "messaging")
    monkeypatch.setenv("RELEASE", "outbound")
    for name in ("KUBERNETES_API", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)


QUERY = "?labelSelector=app.kubernetes.io%2Finstance%3Doutbound"
PATH = "/apis/messaging.outbound.dev/v1alpha1/namespaces/messaging/channelproviders" + QUERY


@pytest.mark.parametrize(
    ("host", "port", "api"),
    [("10.96.0.1", "443", "https://10.96.0.1:443"), ("fd00::1", "6443", "https://[fd00::1]:6443")],
)
def test_in_a_pod_the_hook_dials_the_address_in_its_environment(
    monkeypatch: pytest.MonkeyPatch, host: str, port: str, api: str
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    assert cleanup_script().collection_url("channelproviders") == api + PATH


def test_kubernetes_api_wins_and_the_service_name_is_the_last_resort(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cleanup_script().collection_url("channelproviders") == "https://kubernetes.default.svc" + PATH
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_API", "https://127.0.0.1:6443/")
    assert cleanup_script().collection_url("channelproviders") == "https://127.0.0.1:6443" + PATH
