"""RBAC is really enforced: a ServiceAccount acts with a real TokenRequest token."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .manifests import GROUP, channel_provider
from .operator.support import ACCOUNT, cluster_wide_rbac, deployment, namespaced_rbac
from .plane import ControlPlane

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("crds")]

READ_ROLE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": ["channelproviders"], "verbs": ["get", "list", "watch"]}
]


def _role_and_binding(namespace: str, account: str) -> list[dict[str, Any]]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "channelprovider-reader"},
        "rules": READ_ROLE_RULES,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "channelprovider-reader"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "channelprovider-reader",
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    return [role, binding]


def _list_as(plane: ControlPlane, namespace: str, kubeconfig: Path) -> Any:
    return plane.kubectl("get", "channelproviders", "-n", namespace, kubeconfig=kubeconfig, check=False)


def _eventually_allowed(plane: ControlPlane, namespace: str, kubeconfig: Path, timeout: float = 10.0) -> Any:
    """RBAC changes reach the authorizer through an informer: allow a moment for it."""
    deadline = time.monotonic() + timeout
    result = _list_as(plane, namespace, kubeconfig)
    while result.returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        result = _list_as(plane, namespace, kubeconfig)
    return result


def test_token_authenticates_as_the_service_account(plane: ControlPlane, namespace: str) -> None:
    kubeconfig = plane.service_account_kubeconfig(namespace, "whoami")
    review = plane.kubectl_json("auth", "whoami", kubeconfig=kubeconfig)
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:whoami"


def test_service_account_without_role_is_forbidden(plane: ControlPlane, namespace: str) -> None:
    kubeconfig = plane.service_account_kubeconfig(namespace, "nobody")
    result = _list_as(plane, namespace, kubeconfig)
    assert result.returncode != 0
    expected = (
        f'channelproviders.{GROUP} is forbidden: User "system:serviceaccount:{namespace}:nobody" '
        f'cannot list resource "channelproviders" in API group "{GROUP}" in the namespace "{namespace}"'
    )
    assert expected in result.stderr


def test_service_account_with_role_is_allowed_only_what_it_grants(plane: ControlPlane, namespace: str) -> None:
    plane.apply(channel_provider("twilio"), namespace=namespace)
    kubeconfig = plane.service_account_kubeconfig(namespace, "reader")
    plane.apply(_role_and_binding(namespace, "reader"), namespace=namespace)
    listed = _eventually_allowed(plane, namespace, kubeconfig)
    assert listed.returncode == 0, listed.stderr
    assert "twilio" in listed.stdout
    patch = '{"spec":{"enabled":false}}'
    denied = plane.kubectl(
        "patch",
        "cp",
        "twilio",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        patch,
        kubeconfig=kubeconfig,
        check=False,
    )
    assert denied.returncode != 0
    assert 'cannot patch resource "channelproviders"' in denied.stderr


def test_role_grants_nothing_in_other_namespaces(plane: ControlPlane, namespace: str) -> None:
    kubeconfig = plane.service_account_kubeconfig(namespace, "reader")
    plane.apply(_role_and_binding(namespace, "reader"), namespace=namespace)
    assert _eventually_allowed(plane, namespace, kubeconfig).returncode == 0
    other = plane.create_namespace("rbac-other")
    try:
        result = _list_as(plane, other, kubeconfig)
        assert result.returncode != 0
        assert "forbidden" in result.stderr
    finally:
        plane.delete_namespace(other)


def _as_operator(plane: ControlPlane, kubeconfig: Path, *args: str) -> Any:
    return plane.kubectl(*args, kubeconfig=kubeconfig, check=False)


def test_shipped_operator_rbac_touches_deployments_only_where_its_role_is_bound(
    plane: ControlPlane, namespace: str
) -> None:
    """deploy/operator-rbac.yaml (Role + RoleBinding moved to the test namespace) and, on top,
    deploy/operator-rbac-cluster-wide.yaml: the operator's token may read and patch the worker
    Deployment here, and may neither read nor patch nor create one in another namespace, even with the
    cluster-wide grant (which only covers the custom resources)."""
    kubeconfig = plane.service_account_kubeconfig(namespace, ACCOUNT)
    plane.apply(namespaced_rbac(namespace), namespace=namespace)
    other = plane.create_namespace("rbac-victim")
    cluster_wide = cluster_wide_rbac(namespace)
    try:
        plane.apply(deployment("worker"), namespace=namespace)
        plane.apply(deployment("victim"), namespace=other)
        patch = ["--type=merge", "-p", '{"metadata":{"labels":{"touched":"yes"}}}']
        deadline = time.monotonic() + 15
        while _as_operator(plane, kubeconfig, "get", "deployment", "worker", "-n", namespace).returncode != 0:
            assert time.monotonic() < deadline, "the operator's Role did not take effect"
            time.sleep(0.2)
        assert _as_operator(plane, kubeconfig, "patch", "deployment", "worker", "-n", namespace, *patch).returncode == 0

        def denied_elsewhere() -> None:
            for args in (
                ("get", "deployment", "victim", "-n", other),
                ("patch", "deployment", "victim", "-n", other, *patch),
                ("create", "deployment", "new", "--image=registry.test/x:1", "-n", other),
                ("get", "configmaps", "-n", other),
                ("get", "poddisruptionbudgets", "-n", other),
            ):
                result = _as_operator(plane, kubeconfig, *args)
                assert result.returncode != 0, args
                assert "forbidden" in result.stderr, result.stderr

        denied_elsewhere()
        plane.apply(cluster_wide)
        deadline = time.monotonic() + 15
        while _as_operator(plane, kubeconfig, "get", "channelproviders", "-n", other).returncode != 0:
            assert time.monotonic() < deadline, "the cluster-wide ClusterRoleBinding did not take effect"
            time.sleep(0.2)
        denied_elsewhere()
        victim = plane.kubectl_json("get", "deployment", "victim", "-n", other)
        assert "touched" not in victim["metadata"].get("labels", {})
    finally:
        for doc in cluster_wide:
            plane.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found")
        plane.delete_namespace(other)
