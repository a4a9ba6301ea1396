"""In a pod, the operator dials the API server where Kubernetes says it is (KUBERNETES_SERVICE_HOST
and _PORT, as client-go does), not kopf's default name kubernetes.default.svc, which only resolves
while cluster DNS answers."""

from __future__ import annotations

import kopf
import pytest

from outbound_operator.kube import in_cluster

ACCOUNT = kopf.ConnectionInfo(
    server="https://kubernetes.default.svc",
    ca_path="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
    token="token",
    default_namespace="messaging",
)


@pytest.mark.parametrize(
    ("host", "port", "server"),
    [
        ("10.96.0.1", "443", "https://10.96.0.1:443"),
        ("10.0.0.1", "6443", "https://10.0.0.1:6443"),
        ("fd00:10:96::1", "443", "https://[fd00:10:96::1]:443"),
    ],
)
def test_the_service_account_login_uses_the_address_kubernetes_gives_the_pod(
    monkeypatch: pytest.MonkeyPatch, host: str, port: str, server: str
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    info = in_cluster(ACCOUNT)
    assert info is not None
    assert info.server == server
    # Everything else is kopf's: the token, the CA and the namespace of the pod's account.
    assert (info.token, info.ca_path, info.default_namespace) == ("token", ACCOUNT.ca_path, "messaging")


def test_without_the_variables_kopfs_address_stays_and_no_login_stays_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    assert in_cluster(ACCOUNT) == ACCOUNT
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert in_cluster(None) is None
