"""On the test plane's real node: the worker pod the operator rendered starts, passes its readiness
probe (its database reached through the node's relay), sends, and the ChannelProvider's Ready turns
True; a spec no node can satisfy rolls out a pod the scheduler cannot place, and Ready says so while
the old pod keeps sending.

Run it alone on the node: `flock /tmp/outbound-node.lock .venv/bin/python -m pytest <this file>`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import asyncpg
import pytest

from tests.kube.manifests import channel_provider
from tests.kube.node import TOLERATION
from tests.kube.plane import ControlPlane

from .support import OperatorProcess, condition, eventually, get
from .workers import FAST_WORKER_ENV, enqueue_many, statuses

pytestmark = [pytest.mark.kube, pytest.mark.images, pytest.mark.timeout(900)]
AFFINITY_NOWHERE = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["nowhere"]}]}]
        }
    }
}


def _ready(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    return condition(get(plane, namespace, "channelprovider", "sms"), "Ready")


async def _statuses_are(db: asyncpg.Connection, expected: dict[str, int]) -> bool:
    return await statuses(db) == expected


async def test_the_rendered_worker_pod_becomes_available_and_ready_follows_it(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    operator_process: OperatorProcess,
    on_node: tuple[str, str],
) -> None:
    image, pod_sandbox = on_node
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE"] = image
    operator_process.start()
    spec = {
        "channel": "SMS",
        "provider": "sandbox",
        "endpoint": pod_sandbox,
        "tolerations": [TOLERATION],  # the test node is tainted: without it no pod would land there
        "scaling": {"replicas": {"min": 1, "max": 1}},
        "env": FAST_WORKER_ENV,
    }
    plane.apply(channel_provider("sms", spec), namespace=namespace)

    def ready_true() -> dict[str, Any]:
        ready = _ready(plane, namespace)
        assert (ready.get("status"), ready.get("reason")) == ("True", "WorkersAvailable"), ready
        return ready

    ready = await eventually(ready_true, timeout=240, interval=0.5)
    assert ready["message"] == "1 of 1 worker pods available"
    provider = get(plane, namespace, "channelprovider", "sms")
    assert provider is not None
    assert provider["status"]["readyReplicas"] == 1
    series = f'outbound_operator_provider_ready{{namespace="{namespace}",provider="sms"}}'
    await eventually(lambda: f"{series} 1.0" in operator_process.metrics(), timeout=30)

    # The pod is the worker: it claims the channel's messages and sends them through the sandbox.
    await enqueue_many(db, 20)
    await eventually(lambda: _statuses_are(db, {"SENT": 20}), timeout=120)

    # Specs no node can satisfy: each new pod cannot be placed, the old one stays and sends, Ready
    # quotes the scheduler; undone, the rollout completes.
    unplaceable = {
        "nodeSelector": ({"pool": "nowhere"}, "didn't match Pod's node affinity/selector"),
        "affinity": (AFFINITY_NOWHERE, "didn't match Pod's node affinity/selector"),
        "resources": ({"requests": {"cpu": "64", "memory": "128Mi"}}, "Insufficient cpu"),
    }
    sent = 20
    for field, (value, said) in unplaceable.items():
        _patch(plane, namespace, {field: value})

        def stuck(said: str = said) -> dict[str, Any]:
            ready = _ready(plane, namespace)
            assert (ready.get("status"), ready.get("reason")) == ("False", "RolloutInProgress"), ready
            assert "pods unschedulable: 0/1 nodes are available" in ready["message"], ready
            assert said in ready["message"], ready
            return ready

        stuck_ready = await eventually(stuck, timeout=120, interval=0.5)
        print(f"Ready with an unplaceable {field}: {stuck_ready['message']}")
        await enqueue_many(db, 10)
        sent += 10
        await eventually(functools.partial(_statuses_are, db, {"SENT": sent}), timeout=120)
        _patch(plane, namespace, {field: None})
        await eventually(ready_true, timeout=240, interval=0.5)


def _patch(plane: ControlPlane, namespace: str, spec: dict[str, Any]) -> None:
    body = json.dumps({"spec": spec})
    plane.kubectl("patch", "cp", "sms", "-n", namespace, "--type", "merge", "-p", body)


async def _worker_connections(db: asyncpg.Connection) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'outbound-worker'"
    return int(await db.fetchval(query))


async def test_the_worker_processes_of_a_pod_follow_its_cpu_limit(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    operator_process: OperatorProcess,
    on_node: tuple[str, str],
) -> None:
    """A 1500m CPU limit gives a pod of 2 worker processes (Kubernetes rounds the resourceFieldRef
    up): 2 lease owners, 3 connections each, one Ready pod. A limit of 1 rolls the pod to one
    process; the old pod's supervisor (PID 1) drains both its processes on the way: nothing lost."""
    image, pod_sandbox = on_node
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE"] = image
    operator_process.start()
    resources = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1500m", "memory": "768Mi"}}
    spec = {
        "channel": "SMS",
        "provider": "sandbox",
        "endpoint": pod_sandbox,
        "tolerations": [TOLERATION],
        "scaling": {"replicas": {"min": 1, "max": 1}},
        "env": FAST_WORKER_ENV,
        "resources": resources,
    }
    plane.apply(channel_provider("sms", spec), namespace=namespace)

    def ready_true() -> dict[str, Any]:
        ready = _ready(plane, namespace)
        assert (ready.get("status"), ready.get("reason")) == ("True", "WorkersAvailable"), ready
        return ready

    await eventually(ready_true, timeout=300, interval=0.5)
    await enqueue_many(db, 200)
    await eventually(lambda: _statuses_are(db, {"SENT": 200}), timeout=180)
    owners = [r["worker_id"] for r in await db.fetch("SELECT DISTINCT worker_id FROM outbound_attempt")]
    assert sorted(owner.rsplit("-", 1)[1] for owner in owners) == ["0", "1"], owners
    assert await _worker_connections(db) == 6

    _patch(plane, namespace, {"resources": {**resources, "limits": {"cpu": "1", "memory": "768Mi"}}})
    await enqueue_many(db, 300)
    await eventually(lambda: _statuses_are(db, {"SENT": 500}), timeout=300)
    assert await db.fetchval("SELECT count(*) FROM outbound_attempt") == 500  # each sent once: a clean drain

    async def one_process() -> bool:
        return await _worker_connections(db) == 3

    await eventually(one_process, timeout=240, interval=0.5)
    await eventually(ready_true, timeout=240, interval=0.5)
