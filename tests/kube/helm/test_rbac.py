"""The chart's operator ServiceAccount, with the chart's bindings, on the real authorizer: what the
operator needs is allowed where it works, and nothing more (no Secrets, no deletes, no workloads in
namespaces it does not serve, also with clusterWide=true, which only widens the custom resources)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.kube.operator.support import deployment
from tests.kube.plane import ControlPlane

from .support import can_i, helm, release_args, token_kubeconfig, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("crds")]

ALLOWED = [
    ("watch", "channelproviders.messaging.outbound.dev"),
    ("patch", "channelproviders.messaging.outbound.dev"),
    ("patch", "channelproviders.messaging.outbound.dev/status"),
    ("patch", "quotapolicies.messaging.outbound.dev/status"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("create", "configmaps"),
    ("create", "poddisruptionbudgets.policy"),
    ("patch", "poddisruptionbudgets.policy"),
    ("create", "events"),
    ("watch", "deployments.apps"),  # Ready follows the worker Deployment's available pods
    ("list", "pods"),  # Ready quotes the scheduler for a worker pod it cannot place
]
CUSTOM_RESOURCES = [rule for rule in ALLOWED if "messaging.outbound.dev" in rule[1] or rule[1] == "events"]
WORKLOADS = [rule for rule in ALLOWED if rule not in CUSTOM_RESOURCES]
DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "deployments.apps"),
    ("delete", "poddisruptionbudgets.policy"),
    ("delete", "channelproviders.messaging.outbound.dev"),
    ("update", "channelproviders.messaging.outbound.dev"),
    ("create", "channelproviders.messaging.outbound.dev"),
    ("get", "pods"),
    ("delete", "pods"),
    ("create", "pods/exec"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts/token"),
]


def install(plane: ControlPlane, namespace: str, tmp: Path, values: dict[str, Any]) -> tuple[str, Path]:
    release = f"rb-{secrets.token_hex(3)}"
    helm(plane, "install", *release_args(release, namespace, tmp, values), "--no-hooks")
    account = f"{release}-outbound-messaging-operator"
    kubeconfig = token_kubeconfig(plane, namespace, account, tmp / "operator.kubeconfig")
    wait_for(lambda: can_i(plane, kubeconfig, "watch", ALLOWED[0][1], namespace), "the RoleBinding is in force")
    return release, kubeconfig


def test_namespaced_operator_may_do_its_work_here_and_nothing_elsewhere(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    release, kubeconfig = install(plane, namespace, tmp_path, {})
    for verb, resource in ALLOWED:
        assert can_i(plane, kubeconfig, verb, resource, namespace), f"{verb} {resource}"
    for verb, resource in DENIED:
        assert not can_i(plane, kubeconfig, verb, resource, namespace), f"{verb} {resource}"
    for verb, resource in ALLOWED:
        assert not can_i(plane, kubeconfig, verb, resource, "default"), f"{verb} {resource} in default"
    helm(plane, "uninstall", release, "-n", namespace)
    wait_for(lambda: not can_i(plane, kubeconfig, "watch", ALLOWED[0][1], namespace), "uninstall revoked the rules")


def _cannot_touch_a_deployment_elsewhere(plane: ControlPlane, kubeconfig: Path, release: str, namespace: str) -> None:
    """Real requests with the operator's token on a Deployment of another namespace, not only `can-i`:
    read, patch and create are refused. Uninstalls the release at the end."""
    other = plane.create_namespace("rbac-victim")
    try:
        _refused_on(plane, kubeconfig, other)
    finally:
        plane.delete_namespace(other)
        helm(plane, "uninstall", release, "-n", namespace)


def _refused_on(plane: ControlPlane, kubeconfig: Path, namespace: str) -> None:
    plane.apply(deployment("victim"), namespace=namespace)
    patch = ["--type=merge", "-p", '{"metadata":{"labels":{"touched":"yes"}}}']
    for args in (
        ("get", "deployment", "victim"),
        ("patch", "deployment", "victim", *patch),
        ("create", "deployment", "new", "--image=registry.test/x:1"),
    ):
        result = plane.kubectl(*args, "-n", namespace, kubeconfig=kubeconfig, check=False)
        assert result.returncode != 0, args
        assert "forbidden" in result.stderr, result.stderr
    assert "touched" not in plane.kubectl_json("get", "deployment", "victim", "-n", namespace)["metadata"]["labels"]


def test_namespaced_operator_cannot_touch_a_deployment_of_another_namespace(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    release, kubeconfig = install(plane, namespace, tmp_path, {})
    _cannot_touch_a_deployment_elsewhere(plane, kubeconfig, release, namespace)


def test_cluster_wide_operator_watches_everywhere_but_runs_workers_only_where_it_serves(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    release, kubeconfig = install(plane, namespace, tmp_path, {"operator": {"clusterWide": True}})
    wait_for(lambda: can_i(plane, kubeconfig, "watch", ALLOWED[0][1], None), "the ClusterRoleBinding is in force")
    for verb, resource in ALLOWED:
        assert can_i(plane, kubeconfig, verb, resource, namespace), f"{verb} {resource}"
    for verb, resource in CUSTOM_RESOURCES:
        assert can_i(plane, kubeconfig, verb, resource, "default"), f"{verb} {resource} in default"
    for verb, resource in WORKLOADS + DENIED:
        assert not can_i(plane, kubeconfig, verb, resource, "default"), f"{verb} {resource} in default"
    _cannot_touch_a_deployment_elsewhere(plane, kubeconfig, release, namespace)
