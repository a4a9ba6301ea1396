"""The README's kubectl flow, run for real: its output is what the README shows (run with -s to see it)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.kube.plane import CRDS_DIR, ControlPlane

from .support import OperatorProcess, eventually, get

pytestmark = [pytest.mark.kube]


def _show(plane: ControlPlane, namespace: str, *args: str) -> str:
    output = plane.kubectl(*args, "-n", namespace).stdout
    print(f"$ kubectl {' '.join(args)}\n{output}")
    return output


async def test_readme_kubectl_flow(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    _show(plane, namespace, "apply", "-f", str(CRDS_DIR))
    _show(plane, namespace, "apply", "-f", str(CRDS_DIR / "samples" / "channelprovider-sandbox.yaml"))
    _show(plane, namespace, "wait", "--for=condition=Ready", "channelprovider/sms-sandbox", "--timeout=30s")
    await eventually(
        lambda: (get(plane, namespace, "channelprovider", "sms-sandbox") or {}).get("status", {}).get("batchSize")
    )
    listed = _show(plane, namespace, "get", "channelproviders")
    assert "Closed" in listed
    patch = '{"spec":{"circuitBreaker":{"mode":"ForceOpen"}}}'
    _show(plane, namespace, "patch", "channelprovider", "sms-sandbox", "--type", "merge", "-p", patch)
    await eventually(lambda: "Open" in plane.kubectl("get", "cp", "-n", namespace).stdout.split())
    await asyncio.sleep(1)
    assert "Open" in _show(plane, namespace, "get", "channelproviders").split()
    state = await db.fetchval("SELECT circuit_state FROM provider_control WHERE provider = 'sms-sandbox'")
    print(f"provider_control.circuit_state = {state}")
    assert state == "OPEN"
    _show(plane, namespace, "get", "events", "--field-selector", "involvedObject.name=sms-sandbox")
    _show(plane, namespace, "get", "deployments,configmaps", "-l", "app.kubernetes.io/instance=sms-sandbox")
