"""Real sender processes beside the operator: `outbound worker` per ChannelProvider, sandbox providers.

``rendered_worker`` runs the worker the operator rendered: the container's arguments and its
environment read from the Deployment and ConfigMap the operator wrote, Secrets resolved from the API
server as the kubelet resolves them. Only what a pod gets from its own network namespace and volume
mounts differs: a free HTTP port (pods each have their own 8080) and mounted Secret files written to
a folder. Tests of the worker alone (tests/integration) write their environment by hand; tests here,
where a behaviour crosses from the operator to the worker, never do.
"""

from __future__ import annotations

import base64
import math
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from outbound_sender.embedded import free_port
from tests.kube.plane import ControlPlane
from tests.processes import outbound, stop

from .support import get

DATABASE_SECRET = "outbound-database"  # the operator's default OUTBOUND_OPERATOR_WORKER_DATABASE_SECRET
# What the hand-written workers used to set, now given through the ChannelProvider's own spec.env:
# quick polling and retries, and the pod's own breaker out of the way of the fleet's.
FAST_WORKER_ENV = [
    {"name": "OUTBOUND_WORKER_POLL_INTERVAL_MS", "value": "200"},
    {"name": "OUTBOUND_RETRY_BASE_MS", "value": "100"},
    {"name": "OUTBOUND_RETRY_MAX_MS", "value": "500"},
    {"name": "OUTBOUND_CIRCUIT_FAILURE_THRESHOLD", "value": "1000"},
]

BULK_SMS = """
INSERT INTO outbound_message (org_id, channel, to_recipient, body)
SELECT 'acme', 'SMS', '+1555123' || lpad(i::text, 4, '0'), 'hello ' || i
  FROM generate_series(1, $1) AS i
"""


def sandbox_config(url: str, **changes: Any) -> None:
    config = httpx.get(url + "/_sandbox/config").json()
    httpx.put(url + "/_sandbox/config", json={**config, **changes}).raise_for_status()


async def enqueue_many(db: asyncpg.Connection, count: int) -> None:
    await db.execute(BULK_SMS, count)


async def statuses(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM outbound_message GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def calls_by(db: asyncpg.Connection, provider: str) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM outbound_attempt WHERE provider = $1", provider)
    return count


def database_secret(plane: ControlPlane, namespace: str, dsn: str) -> None:
    """The Secret the worker Deployments read DATABASE_URL from (the chart creates it in a cluster)."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": DATABASE_SECRET},
        "stringData": {"url": dsn},
    }
    plane.apply([secret], namespace=namespace)


def _secret_value(plane: ControlPlane, namespace: str, ref: dict[str, Any]) -> str | None:
    secret = get(plane, namespace, "secret", ref["name"])
    data = (secret or {}).get("data") or {}
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise AssertionError(f"the pod would not start: Secret {ref['name']} has no key {ref['key']}")
    return base64.b64decode(data[ref["key"]]).decode()


def rendered_env(plane: ControlPlane, namespace: str, provider: str, mounts: Path) -> tuple[list[str], dict[str, str]]:
    """(arguments, environment) of the worker container of the operator's Deployment for `provider`."""
    deployment = get(plane, namespace, "deployment", f"{provider}-sender")
    assert deployment is not None, f"the operator wrote no Deployment for {provider}"
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or ():
        config = get(plane, namespace, "configmap", source["configMapRef"]["name"])
        assert config is not None, f"the pod would not start: no ConfigMap {source['configMapRef']['name']}"
        env.update(config.get("data") or {})
    for item in container.get("env") or ():
        if "resourceFieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = _resource_value(container, item["valueFrom"]["resourceFieldRef"])
        elif "valueFrom" in item:
            value = _secret_value(plane, namespace, item["valueFrom"]["secretKeyRef"])
            if value is not None:
                env[item["name"]] = value
        else:
            env[item["name"]] = item.get("value", "")
    volumes = {volume["name"]: volume for volume in pod.get("volumes") or ()}
    for mount in container.get("volumeMounts") or ():
        if "secret" not in volumes[mount["name"]]:
            continue  # an emptyDir (/tmp): the process here has the machine's own
        secret_name = volumes[mount["name"]]["secret"]["secretName"]
        folder = mounts / mount["name"]
        folder.mkdir(parents=True, exist_ok=True)
        for key, data in ((get(plane, namespace, "secret", secret_name) or {}).get("data") or {}).items():
            (folder / key).write_bytes(base64.b64decode(data))
        env = {name: value.replace(mount["mountPath"], str(folder)) for name, value in env.items()}
    env["OUTBOUND_HTTP_PORT"] = str(free_port())  # each pod has its own network namespace; here they share one
    return list(container.get("args") or ()), env


def _resource_value(container: dict[str, Any], ref: dict[str, str]) -> str:
    """What the kubelet gives a resourceFieldRef of a CPU resource with divisor 1: rounded up."""
    kind, resource = ref["resource"].split(".")
    quantity = str(container["resources"][kind][resource])
    cpus = int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    assert ref.get("divisor", "1") == "1", ref
    return str(math.ceil(cpus))


@contextmanager
def rendered_worker(plane: ControlPlane, namespace: str, provider: str, mounts: Path) -> Iterator[None]:
    """`outbound <args>` exactly as the operator's worker Deployment for `provider` would start it;
    its output (what `kubectl logs` would show) goes to worker_log(mounts, provider)."""
    args, env = rendered_env(plane, namespace, provider, mounts / provider)
    with worker_log(mounts, provider).open("ab") as log:
        process = outbound(*args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        stop(process)


def worker_log(mounts: Path, provider: str) -> Path:
    return mounts / f"{provider}.log"
