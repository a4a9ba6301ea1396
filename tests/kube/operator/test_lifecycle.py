"""Create, update, delete and resume of a ChannelProvider against the real API server and PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.kube.manifests import channel_provider
from tests.kube.plane import ControlPlane

from .support import OperatorProcess, condition, eventually, get, reasons

pytestmark = [pytest.mark.kube]

TWILIO: dict[str, Any] = {
    "channel": "SMS",
    "provider": "twilio",
    "priority": 10,
    "credentialsSecretRef": {"name": "twilio-credentials", "keys": {"authToken": "token"}},
    "twilio": {"messagingServiceSid": "MG0123456789abcdef0123456789abcdef"},
    "endpoint": "http://twilio-sandbox.test:8025",
    "scaling": {"batchSize": {"min": 5, "max": 200, "initial": 20}, "replicas": {"min": 2, "max": 6}},
    "rateLimit": {"messagesPerSecond": 100},
}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


async def _control(db: asyncpg.Connection, provider: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM provider_control WHERE provider = $1", provider)


async def test_create_makes_deployment_configmap_and_control_row(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    plane.apply(channel_provider("twilio", TWILIO), namespace=namespace)
    deployment = await eventually(lambda: get(plane, namespace, "deployment", "twilio-sender"))
    config = get(plane, namespace, "configmap", "twilio-sender-config")
    assert config is not None
    owner = get(plane, namespace, "channelprovider", "twilio")
    assert owner is not None
    for obj in (deployment, config):
        [ref] = obj["metadata"]["ownerReferences"]
        expected = ("ChannelProvider", "twilio", owner["metadata"]["uid"], True)
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == expected
    assert config["data"]["OUTBOUND_PROVIDER_NAME"] == "twilio"
    assert config["data"]["OUTBOUND_WORKER_CHANNELS"] == "SMS"
    assert config["data"]["TWILIO_MESSAGING_SERVICE_SID"] == "MG0123456789abcdef0123456789abcdef"
    assert config["data"]["TWILIO_BASE_URL"] == "http://twilio-sandbox.test:8025"
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/actuator/prometheus"
    assert pod["spec"]["terminationGracePeriodSeconds"] > 25  # longer than connect + read timeout
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["volumes"][0]["secret"]["secretName"] == "twilio-credentials"
    container = _container(deployment)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert env["TWILIO_AUTH_TOKEN_FILE"]["value"].endswith("/token")
    assert env["TWILIO_ACCOUNT_SID_FILE"]["value"].endswith("/accountSid")
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "outbound-database", "key": "url"}
    row = await eventually(lambda: _control(db, "twilio"))
    assert (row["channel"], row["kind"], row["enabled"], row["priority"]) == ("SMS", "twilio", True, 10)
    assert (row["circuit_state"], float(row["messages_per_second"])) == ("CLOSED", 100.0)
    # An empty queue: the batch size goes to the spec's minimum (initial 20 until the first measurement).
    assert (await eventually(lambda: _control(db, "twilio")))["batch_size"] in {20, 5}
    ready = await eventually(lambda: condition(get(plane, namespace, "channelprovider", "twilio"), "Ready"))
    assert ready["status"] == "True"
    plane.kubectl("wait", "--for=condition=Ready", "channelprovider/twilio", "-n", namespace, "--timeout=10s")
    assert "secrets" not in operator.log()  # never asked for a Secret (and RBAC would refuse)
