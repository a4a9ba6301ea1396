"""RBAC is really enforced: a ServiceAccount acts with a real TokenRequest token."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .manifests import GROUP, channel_provider
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
