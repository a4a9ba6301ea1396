"""Ready of a ChannelProvider follows its worker Deployment's pods, through the real controllers.

No node runs here, so the test plays the kubelet's part for the pods it wants up: it marks a
Pending worker pod Running and Ready through the pods/status subresource, exactly what a kubelet
reports. Everything else is real: the ReplicaSet and Deployment controllers count available pods,
the operator sees the Deployment's status change and rewrites the ChannelProvider's Ready. The
operator's timer is set to 10 minutes, so every change seen within the test's deadlines came
through its watch of the Deployment, not through the timer.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.kube.manifests import channel_provider
from tests.kube.plane import ControlPlane

from .support import OperatorProcess, condition, eventually, get

pytestmark = [pytest.mark.kube]

SELECTOR = "app.kubernetes.io/instance=sms"
SPEC: dict[str, Any] = {
    "channel": "SMS",
    "provider": "sandbox",
    "endpoint": "http://127.0.0.1:9",
    "scaling": {"replicas": {"min": 2, "max": 2}},
}


def _pods(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = plane.kubectl_json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]
    return [pod for pod in items if not pod["metadata"].get("deletionTimestamp")]


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or ()
    )


def _report(plane: ControlPlane, namespace: str, pod: str, conditions: list[dict[str, str]], phase: str) -> None:
    """What a kubelet (or the scheduler) writes into a pod's status."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"phase": phase, "conditions": [{**c, "lastTransitionTime": now} for c in conditions]}
    patch = json.dumps({"status": status})
    plane.kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch)


def _start_one_pod(plane: ControlPlane, namespace: str) -> str:
    waiting = [pod for pod in _pods(plane, namespace) if not _is_ready(pod)]
    assert waiting, "no Pending worker pod to start"
    name = str(waiting[0]["metadata"]["name"])
    up = [{"type": kind, "status": "True"} for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    _report(plane, namespace, name, up, "Running")
    return name


def _ready(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    return condition(get(plane, namespace, "channelprovider", "sms"), "Ready")


async def _ready_is(plane: ControlPlane, namespace: str, status: str, reason: str, message: str) -> dict[str, Any]:
    def check() -> dict[str, Any]:
        ready = _ready(plane, namespace)
        assert (ready.get("status"), ready.get("reason"), ready.get("message")) == (status, reason, message), ready
        return ready

    found: dict[str, Any] = await eventually(check, timeout=45)
    return found


async def _pod_count(plane: ControlPlane, namespace: str, count: int) -> None:
    await eventually(lambda: len(_pods(plane, namespace)) == count, timeout=45)


async def test_ready_follows_available_worker_pods_through_scale_up_and_down(
    plane: ControlPlane, namespace: str, operator_process: OperatorProcess
) -> None:
    operator_process.settings["OUTBOUND_OPERATOR_RECONCILE_INTERVAL_SECONDS"] = "300"
    operator_process.settings["OUTBOUND_OPERATOR_SCALE_DOWN_COOLDOWN_SECONDS"] = "0"
    operator_process.start()
    plane.apply(channel_provider("sms", SPEC), namespace=namespace)
    await eventually(lambda: condition(get(plane, namespace, "channelprovider", "sms"), "Reconciled"), timeout=45)
    applied = condition(get(plane, namespace, "channelprovider", "sms"), "Reconciled")
    assert (applied["status"], applied["reason"]) == ("True", "Applied")
    await _ready_is(plane, namespace, "False", "WorkersUnavailable", "0 of 2 worker pods available")
    series = f'outbound_operator_provider_ready{{namespace="{namespace}",provider="sms"}}'
    assert f"{series} 0.0" in operator_process.metrics()

    await _pod_count(plane, namespace, 2)
    _start_one_pod(plane, namespace)
    await _ready_is(plane, namespace, "False", "WorkersUnavailable", "1 of 2 worker pods available")
    _start_one_pod(plane, namespace)
    await _ready_is(plane, namespace, "True", "WorkersAvailable", "2 of 2 worker pods available")
    await eventually(lambda: f"{series} 1.0" in operator_process.metrics(), timeout=30)
    provider = get(plane, namespace, "channelprovider", "sms")
    assert provider is not None
    assert provider["status"]["readyReplicas"] == 2
    columns = plane.kubectl("get", "cp", "sms", "-n", namespace, "--no-headers").stdout.split()
    assert "True" in columns  # the READY column

    # Scale up: a third pod is asked for and is not up yet.
    scale = '{"spec":{"scaling":{"replicas":{"min":3,"max":3}}}}'
    plane.kubectl("patch", "cp", "sms", "-n", namespace, "--type", "merge", "-p", scale)
    await _ready_is(plane, namespace, "False", "WorkersUnavailable", "2 of 3 worker pods available")
    await _pod_count(plane, namespace, 3)
    _start_one_pod(plane, namespace)
    await _ready_is(plane, namespace, "True", "WorkersAvailable", "3 of 3 worker pods available")

    # Scale down to one, then to zero (replicas.min 0 and an empty queue): what the spec asks is Ready.
    scale = '{"spec":{"scaling":{"replicas":{"min":1,"max":1}}}}'
    plane.kubectl("patch", "cp", "sms", "-n", namespace, "--type", "merge", "-p", scale)
    await _ready_is(plane, namespace, "True", "WorkersAvailable", "1 of 1 worker pods available")
    scale = '{"spec":{"scaling":{"replicas":{"min":0,"max":1}}}}'
    plane.kubectl("patch", "cp", "sms", "-n", namespace, "--type", "merge", "-p", scale)
    await _ready_is(plane, namespace, "True", "NoWorkersRequested", "0 worker replicas requested (scaled to zero)")
    deployment = get(plane, namespace, "deployment", "sms-sender")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 0


async def test_ready_quotes_the_scheduler_for_a_pod_it_cannot_place(
    plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    spec = {**SPEC, "scaling": {"replicas": {"min": 1, "max": 1}}, "nodeSelector": {"pool": "messaging"}}
    plane.apply(channel_provider("sms", spec), namespace=namespace)
    await _ready_is(plane, namespace, "False", "WorkersUnavailable", "0 of 1 worker pods available")
    await _pod_count(plane, namespace, 1)
    [pod] = _pods(plane, namespace)
    said = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": said}
    _report(plane, namespace, pod["metadata"]["name"], [unschedulable], "Pending")
    await _ready_is(
        plane, namespace, "False", "PodsUnschedulable", f"0 of 1 worker pods available; pods unschedulable: {said}"
    )
