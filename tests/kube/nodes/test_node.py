"""Pods really run on the test plane's node: the sender image's API pod becomes Ready through its
probe (logs and exec work through the API server), and a Deployment's pods get addresses on the
pod network that the host reaches, directly and through a Service's virtual IP (kube-proxy)."""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.request
from typing import Any

import pytest

from tests.images.containers import Images
from tests.kube.node import NODE_NAME, POD_SUBNET, TOLERATION, Node
from tests.kube.plane import ControlPlane
from tests.kube.processes import free_ports

pytestmark = [pytest.mark.kube, pytest.mark.images, pytest.mark.timeout(900)]


SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def sender_pod(image: str, dsn: str, port: int) -> dict[str, Any]:
    """The API pod as the chart writes it (security context, probes, /tmp), on the host network."""
    http = {"path": "/readyz", "port": port}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sender", "labels": {"app": "sender"}},
        "spec": {
            # The embedded test PostgreSQL listens on the host's loopback only.
            "hostNetwork": True,
            "tolerations": [TOLERATION],
            "terminationGracePeriodSeconds": 30,
            "securityContext": POD_SECURITY_CONTEXT,
            "containers": [
                {
                    "name": "api",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "env": [
                        {"name": "DATABASE_URL", "value": dsn},
                        {"name": "OUTBOUND_PROVIDER_KIND", "value": "live"},
                        # The chart's default: no provider's webhooks until `api.webhookProviders` names them.
                        {"name": "OUTBOUND_PROVIDERS_ENABLED", "value": ""},
                        {"name": "OUTBOUND_HTTP_PORT", "value": str(port)},
                    ],
                    "readinessProbe": {"httpGet": http, "periodSeconds": 1},
                    "securityContext": SECURITY_CONTEXT,
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
        },
    }


def test_sender_pod_becomes_ready(plane: ControlPlane, namespace: str, node: Node, images: Images, db_dsn: str) -> None:
    node.import_image(images.sender)
    [port] = free_ports(1)
    started = time.monotonic()
    plane.apply(sender_pod(images.sender, db_dsn, port), namespace=namespace)
    plane.kubectl("wait", "--for=condition=Ready", "pod/sender", "-n", namespace, "--timeout=180s", timeout=200)
    seconds = time.monotonic() - started
    pod = json.loads(plane.kubectl("get", "pod", "sender", "-n", namespace, "-o", "json").stdout)
    assert pod["spec"]["nodeName"] == NODE_NAME  # placed by kube-scheduler
    logs = plane.kubectl("logs", "sender", "-n", namespace).stdout  # API server -> kubelet -> containerd
    assert "GET /readyz 200" in logs
    # The ServiceAccount volume (token + kube-root-ca.crt from the root CA publisher), read through exec.
    account = "/var/run/secrets/kubernetes.io/serviceaccount"
    read = f"print(open('{account}/namespace').read(), len(open('{account}/ca.crt').read()) > 0)"
    assert plane.kubectl("exec", "sender", "-n", namespace, "--", "python3", "-c", read).stdout.split() == [
        namespace,
        "True",
    ]
    print(f"pod Ready {seconds:.1f} s after apply; image import {node.imported[images.sender]:.1f} s")
    plane.kubectl("delete", "pod", "sender", "-n", namespace, "--timeout=60s", timeout=90)


def sandbox_deployment(image: str, replicas: int) -> dict[str, Any]:
    """The image's sandbox provider server (no database needed) on the pod network."""
    labels = {"app": "sandbox"}
    container = {
        "name": "sandbox",
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["sandbox", "--host", "0.0.0.0", "--port", "8090"],
        "readinessProbe": {"tcpSocket": {"port": 8090}, "periodSeconds": 1},
        "securityContext": SECURITY_CONTEXT,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sandbox"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": POD_SECURITY_CONTEXT,
                    "tolerations": [TOLERATION],
                    "containers": [container],
                },
            },
        },
    }


# What a sandbox that has served nothing counts (GET /_sandbox/stats).
EMPTY_STATS: dict[str, Any] = {"requests": {}, "webhooks": {}, "recipients": {"accepted": {}, "failed": {}}}


def sandbox_stats(url: str) -> dict[str, Any] | None:
    """The sandbox's own answer at ``url`` (its stats document), or None.

    Not any HTTP answer: this machine's egress proxy answers 404 for every address it does not know.
    """
    try:
        with urllib.request.urlopen(f"{url}/_sandbox/stats", timeout=5) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document
    except (OSError, ValueError):
        return None


def test_deployment_pods_are_reached_by_address_and_through_a_service(
    plane: ControlPlane, namespace: str, node: Node, images: Images
) -> None:
    node.import_image(images.sender)
    started = time.monotonic()
    plane.apply(sandbox_deployment(images.sender, 2), namespace=namespace)
    plane.kubectl("rollout", "status", "deployment/sandbox", "-n", namespace, "--timeout=180s", timeout=200)
    print(f"deployment of 2 pods available {time.monotonic() - started:.1f} s after apply")
    pods = plane.kubectl_json("get", "pods", "-n", namespace, "-l", "app=sandbox")["items"]
    addresses = {pod["status"]["podIP"] for pod in pods}
    assert len(addresses) == 2, addresses
    for address in addresses:
        assert ipaddress.ip_address(address) in ipaddress.ip_network(POD_SUBNET)
        assert sandbox_stats(f"http://{address}:8090") == EMPTY_STATS, address

    # A Service in front of them: kube-proxy routes its virtual IP (the endpointslice controller
    # lists the ready pods).
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "sandbox"},
        "spec": {"selector": {"app": "sandbox"}, "ports": [{"port": 80, "targetPort": 8090}]},
    }
    plane.apply(service, namespace=namespace)
    cluster_ip = plane.kubectl_json("get", "service", "sandbox", "-n", namespace)["spec"]["clusterIP"]
    deadline = time.monotonic() + 60
    while sandbox_stats(f"http://{cluster_ip}:80") is None:
        assert time.monotonic() < deadline, f"service {cluster_ip}:80 not routed to its pods within 60 s"
        time.sleep(0.2)
    plane.kubectl("delete", "deployment", "sandbox", "-n", namespace, "--wait=true", "--timeout=60s", timeout=90)


def test_pods_that_do_not_tolerate_the_test_node_stay_pending(
    plane: ControlPlane, namespace: str, node: Node, images: Images
) -> None:
    """Other tests' pods (made-up images, no toleration) keep the node-less behaviour they expect."""
    deployment = sandbox_deployment(images.sender, 1)
    del deployment["spec"]["template"]["spec"]["tolerations"]
    plane.apply(deployment, namespace=namespace)
    deadline = time.monotonic() + 60
    while True:
        pods = plane.kubectl_json("get", "pods", "-n", namespace, "-l", "app=sandbox")["items"]
        conditions = {c["type"]: c for pod in pods for c in pod.get("status", {}).get("conditions") or []}
        scheduled = conditions.get("PodScheduled")
        if scheduled is not None and scheduled["status"] == "False":
            break
        assert time.monotonic() < deadline, f"no scheduling decision within 60 s: {pods}"
        time.sleep(0.2)
    assert scheduled["reason"] == "Unschedulable"
    assert "untolerated taint" in scheduled["message"]
    assert not pods[0]["spec"].get("nodeName")
