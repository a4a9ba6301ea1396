"""A pod on the pod network reaches what a cluster gives it: the API server at the `kubernetes`
Service (KUBERNETES_SERVICE_HOST/PORT, its ServiceAccount token and CA), and the test PostgreSQL
and Redis, which listen on the host's loopback, through the node's relays at HOST_ADDRESS."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from outbound_sender.embedded import EmbeddedRedis
from tests.images.containers import Images
from tests.kube.node import HOST_ADDRESS, TOLERATION, Node
from tests.kube.plane import ControlPlane
from tests.kube.relay import Relay

from .test_node import POD_SECURITY_CONTEXT, SECURITY_CONTEXT

pytestmark = [pytest.mark.kube, pytest.mark.images, pytest.mark.timeout(600)]

# Runs in the sender image (asyncpg and redis are installed there); prints one JSON line.
PROBE = """
import asyncio, json, os, ssl, urllib.request
import asyncpg, redis

account = "/var/run/secrets/kubernetes.io/serviceaccount"
api = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
context = ssl.create_default_context(cafile=f"{account}/ca.crt")
token = open(f"{account}/token").read().strip()
review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
request = urllib.request.Request(
    api + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    data=review,
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(request, context=context, timeout=10) as answer:
    user = json.loads(answer.read())["status"]["userInfo"]["username"]

async def database():
    connection = await asyncpg.connect(os.environ["DATABASE_URL"], timeout=10)
    try:
        return await connection.fetchval("SELECT count(*) FROM outbound_message")
    finally:
        await connection.close()

pong = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10).ping()
print(json.dumps({"api": api, "user": user, "messages": asyncio.run(database()), "redis": pong}))
"""


def probe_pod(image: str, database_url: str, redis_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [TOLERATION],
            "securityContext": POD_SECURITY_CONTEXT,
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", PROBE],
                    "env": [
                        {"name": "DATABASE_URL", "value": database_url},
                        {"name": "REDIS_URL", "value": redis_url},
                    ],
                    "securityContext": SECURITY_CONTEXT,
                }
            ],
        },
    }


@pytest.fixture
def relayed(node: Node, db_dsn: str, redis_server: EmbeddedRedis) -> tuple[Relay, str, Relay, str]:
    """This test's database and the session's Redis as pods reach them: (relay, URL) of each."""
    return (*node.expose_url(db_dsn), *node.expose_url(redis_server.url))


def test_a_pod_reaches_the_api_server_postgresql_and_redis(
    plane: ControlPlane, namespace: str, node: Node, images: Images, relayed: tuple[Relay, str, Relay, str]
) -> None:
    node.import_image(images.sender)
    database, database_url, redis, redis_url = relayed
    assert HOST_ADDRESS in database_url
    plane.apply(probe_pod(images.sender, database_url, redis_url), namespace=namespace)

    deadline = time.monotonic() + 180
    while (phase := plane.kubectl_json("get", "pod", "probe", "-n", namespace)["status"].get("phase")) not in (
        "Succeeded",
        "Failed",
    ):
        assert time.monotonic() < deadline, f"probe pod still {phase} after 180 s"
        time.sleep(0.5)
    logs = plane.kubectl("logs", "probe", "-n", namespace).stdout
    assert phase == "Succeeded", logs
    found = json.loads(logs.strip().splitlines()[-1])
    assert found == {
        "api": "https://10.0.0.1:443",  # the `kubernetes` Service, as in every cluster
        "user": f"system:serviceaccount:{namespace}:default",  # its own token, checked by our API server
        "messages": 0,  # this test's (migrated, empty) database
        "redis": True,
    }
    # Through the relays, not some other server.
    assert database.connections >= 1
    assert redis.connections >= 1
