"""The chart's operator ServiceAccount, with the chart's bindings, on the real authorizer: what the
operator needs is allowed where it works, and nothing more (no Secrets, no deletes, no other
namespaces unless cluster-wide)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

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
    ("create", "events"),
]
DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "deployments.apps"),
    ("delete", "channelproviders.messaging.outbound.dev"),
    ("update", "channelproviders.messaging.outbound.dev"),
    ("create", "channelproviders.messaging.outbound.dev"),
    ("list", "pods"),
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


def test_cluster_wide_operator_may_work_in_every_namespace_but_still_not_read_secrets(
    plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    release, kubeconfig = install(plane, namespace, tmp_path, {"operator": {"clusterWide": True}})
    wait_for(lambda: can_i(plane, kubeconfig, "watch", ALLOWED[0][1], None), "the ClusterRoleBinding is in force")
    for verb, resource in ALLOWED:
        assert can_i(plane, kubeconfig, verb, resource, "default"), f"{verb} {resource} in default"
    for verb, resource in DENIED:
        assert not can_i(plane, kubeconfig, verb, resource, "default"), f"{verb} {resource} in default"
    helm(plane, "uninstall", release, "-n", namespace)
