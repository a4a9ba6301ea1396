"""The operator image against the real API server: it logs in with a ServiceAccount's credentials,
acts under the shipped RBAC only, and turns a ChannelProvider into a worker Deployment that runs
the sender image it was given, as its chart Deployment sets it up (read-only root, uid 10001)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.images.fixtures import Runner, images, run_container
from tests.kube.manifests import channel_provider
from tests.kube.plane import ControlPlane
from tests.kube.processes import free_ports

from .support import condition, eventually, get

pytestmark = [pytest.mark.kube, pytest.mark.images]
__all__ = ["images", "run_container"]  # fixtures used below

MOUNT = "/etc/outbound-kube"


def container_kubeconfig(kubeconfig: Path, ca_cert: Path, folder: Path) -> Path:
    """The ServiceAccount's kubeconfig with its CA inside ``MOUNT``, readable by uid 10001 only."""
    folder.mkdir()
    document: dict[str, Any] = json.loads(kubeconfig.read_text())
    document["clusters"][0]["cluster"]["certificate-authority"] = f"{MOUNT}/ca.crt"
    (folder / "config").write_text(json.dumps(document))
    shutil.copyfile(ca_cert, folder / "ca.crt")
    for path in (folder, folder / "config", folder / "ca.crt"):
        os.chown(path, 10001, 10001)
    return folder


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


async def test_operator_image_logs_in_and_creates_the_worker_deployment(
    plane: ControlPlane,
    namespace: str,
    db_dsn: str,
    operator_kubeconfig: Path,
    run_container: Runner,
) -> None:
    images = run_container.images
    kube = container_kubeconfig(operator_kubeconfig, plane.pki.ca_cert, run_container.workdir / "kube")
    metrics_port, health_port = free_ports(2)
    env = {
        "KUBECONFIG": f"{MOUNT}/config",
        "OUTBOUND_OPERATOR_DATABASE_URL": db_dsn,
        "OUTBOUND_OPERATOR_NAMESPACES": namespace,
        "OUTBOUND_OPERATOR_STANDALONE": "true",
        "OUTBOUND_OPERATOR_WORKER_IMAGE": images.sender,
        "OUTBOUND_OPERATOR_RECONCILE_INTERVAL_SECONDS": "0.5",
        "OUTBOUND_OPERATOR_METRICS_PORT": str(metrics_port),
        "OUTBOUND_OPERATOR_HEALTH_PORT": str(health_port),
        "OUTBOUND_OPERATOR_LOG_LEVEL": "DEBUG",
    }
    started = time.monotonic()
    operator = run_container(images.operator, env=env, volumes={kube: MOUNT})  # the image's entrypoint, no args

    def up() -> bool:
        assert operator.running(), f"the operator exited:\n{operator.log()[-3000:]}"
        return healthy(health_port)

    await eventually(up, timeout=90)
    print(f"operator image: /healthz 200 {time.monotonic() - started:.2f} s after `podman run`")

    plane.apply(channel_provider("twilio"), namespace=namespace)
    deployment = await eventually(lambda: get(plane, namespace, "deployment", "twilio-sender"), timeout=60)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == images.sender
    applied = await eventually(lambda: condition(get(plane, namespace, "channelprovider", "twilio"), "Reconciled"), 60)
    assert applied["status"] == "True", applied
    db = await asyncpg.connect(db_dsn)
    try:
        row = await eventually(lambda: db.fetchrow("SELECT * FROM provider_control WHERE provider = 'twilio'"), 30)
    finally:
        await db.close()
    assert (row["channel"], row["kind"]) == ("SMS", "twilio")
    # It logged in with the mounted kubeconfig, as the ServiceAccount (no other identity is there).
    assert "Activity 'build_registry.<locals>.login' succeeded" in operator.log()
    assert "secrets" not in operator.log()
    assert operator.stop() == 0, f"not a clean exit on SIGTERM:\n{operator.log()[-3000:]}"
