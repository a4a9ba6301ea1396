"""A hostile ChannelProvider gets no worker: no foreign image, no http endpoint for credentials.

The operator runs as its ServiceAccount with the shipped Role; the ChannelProviders are accepted by
the API server (their fields are well formed), so only the operator's own settings stand between
them and a pod that receives DATABASE_URL.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube.manifests import channel_provider
from tests.kube.plane import ControlPlane

from .support import OperatorProcess, condition, eventually, get, reasons

pytestmark = [pytest.mark.kube]

SANDBOX: dict[str, Any] = {"channel": "SMS", "provider": "sandbox", "priority": 100}


def _image(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


async def _refused(plane: ControlPlane, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def ready_false() -> dict[str, Any]:
        ready = condition(get(plane, namespace, "channelprovider", name), "Ready")
        assert (ready.get("status"), ready.get("reason")) == ("False", reason), ready
        return ready

    ready: dict[str, Any] = await eventually(ready_false, timeout=60)
    await eventually(lambda: reason in reasons(plane, namespace, name), timeout=30)
    return ready


async def _hostile_gets_nothing(
    plane: ControlPlane, namespace: str, name: str, spec: dict[str, Any], reason: str
) -> tuple[str, dict[str, Any]]:
    """(Ready's message, the Deployment of a harmless provider applied next to it).

    The harmless one getting its Deployment shows the operator is working, so the hostile one's
    missing Deployment and ConfigMap are the operator's refusal, not its slowness.
    """
    plane.apply(channel_provider(name, spec), namespace=namespace)
    ready = await _refused(plane, namespace, name, reason)
    plane.apply(channel_provider("good", SANDBOX), namespace=namespace)
    good: dict[str, Any] = await eventually(lambda: get(plane, namespace, "deployment", "good-sender"), 60)
    assert get(plane, namespace, "deployment", f"{name}-sender") is None
    assert get(plane, namespace, "configmap", f"{name}-sender-config") is None
    return str(ready["message"]), good


async def test_a_foreign_image_gets_no_deployment(
    plane: ControlPlane, namespace: str, operator_process: OperatorProcess
) -> None:
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE_REPOSITORIES"] = "registry.local:5000/sender"
    operator_process.start()
    hostile = {**SANDBOX, "image": "attacker.example/exfil:1"}
    message, good = await _hostile_gets_nothing(plane, namespace, "exfil", hostile, "ImageNotAllowed")
    assert "attacker.example/exfil" in message

    # A listed repository is accepted; turning it hostile afterwards leaves the running image alone.
    plane.apply(channel_provider("listed", {**SANDBOX, "image": "registry.local:5000/sender:7"}), namespace=namespace)
    listed = await eventually(lambda: get(plane, namespace, "deployment", "listed-sender"), 60)
    assert _image(listed) == "registry.local:5000/sender:7"
    patch = '{"spec":{"image":"attacker.example/exfil:1"}}'
    plane.kubectl("patch", "channelprovider", "listed", "-n", namespace, "--type", "merge", "-p", patch)
    await _refused(plane, namespace, "listed", "ImageNotAllowed")
    after = get(plane, namespace, "deployment", "listed-sender")
    assert after is not None
    assert _image(after) == "registry.local:5000/sender:7"
    assert _image(good).startswith("ghcr.io/outbound-messaging/outbound-sender:")


async def test_an_http_endpoint_gets_no_deployment_unless_the_operator_allows_the_sandbox(
    plane: ControlPlane, namespace: str, operator_process: OperatorProcess
) -> None:
    operator_process.settings["OUTBOUND_OPERATOR_ALLOW_INSECURE_SANDBOX_ENDPOINT"] = "false"
    operator_process.start()
    hostile = {**SANDBOX, "endpoint": "http://sandbox.test:8025"}
    message, _ = await _hostile_gets_nothing(plane, namespace, "cleartext", hostile, "EndpointNotAllowed")
    assert "OUTBOUND_OPERATOR_ALLOW_INSECURE_SANDBOX_ENDPOINT" in message

    operator_process.settings["OUTBOUND_OPERATOR_ALLOW_INSECURE_SANDBOX_ENDPOINT"] = "true"
    operator_process.restart()
    deployment = await eventually(lambda: get(plane, namespace, "deployment", "cleartext-sender"), 60)
    config = get(plane, namespace, "configmap", "cleartext-sender-config")
    assert config is not None
    assert config["data"]["OUTBOUND_PROVIDER_SANDBOX_URL"] == "http://sandbox.test:8025"
    assert deployment["metadata"]["name"] == "cleartext-sender"
