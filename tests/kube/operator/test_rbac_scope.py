"""The operator as shipped, serving the whole cluster: it reconciles in the namespace where its Role is
bound and cannot create a worker anywhere else (deploy/operator-rbac-cluster-wide.yaml grants the
custom resources everywhere, never Deployments or ConfigMaps)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.kube.manifests import channel_provider
from tests.kube.plane import ControlPlane

from .support import OperatorProcess, cluster_wide_rbac, condition, eventually, get

pytestmark = [pytest.mark.kube]

SANDBOX: dict[str, Any] = {"channel": "SMS", "provider": "sandbox", "priority": 100}


@pytest.fixture
def unserved(plane: ControlPlane, namespace: str) -> Iterator[str]:
    """A namespace without the operator's Role, and the cluster-wide grant for the test's account."""
    grant = cluster_wide_rbac(namespace)
    plane.apply(grant)
    other = plane.create_namespace("unserved")
    yield other
    plane.delete_namespace(other)
    for doc in grant:
        plane.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found")


async def test_cluster_wide_operator_runs_workers_only_where_its_role_is(
    plane: ControlPlane, namespace: str, unserved: str, operator_process: OperatorProcess
) -> None:
    operator_process.namespaces = []  # the whole cluster
    operator_process.start()
    plane.apply(channel_provider("there", SANDBOX), namespace=unserved)
    plane.apply(channel_provider("here", SANDBOX), namespace=namespace)

    await eventually(lambda: get(plane, namespace, "deployment", "here-sender"), timeout=60)
    await eventually(
        lambda: condition(get(plane, namespace, "channelprovider", "here"), "Reconciled").get("status") == "True"
    )

    def refused_there() -> dict[str, Any]:
        ready = condition(get(plane, unserved, "channelprovider", "there"), "Ready")
        assert (ready.get("status"), ready.get("reason")) == ("False", "ReconcileFailed"), ready
        return ready

    ready = await eventually(refused_there, timeout=60)
    assert "forbidden" in ready["message"].lower()
    assert get(plane, unserved, "deployment", "there-sender") is None
    assert get(plane, unserved, "configmap", "there-sender-config") is None
