"""The chart's flow end to end (README "Install on Kubernetes"): Secret, `helm install` with its
migration hook, a ChannelProvider from values, the operator acting as the chart's ServiceAccount
with only the chart's RBAC and the chart's settings, then upgrade and uninstall without orphans.

No kubelet runs: the migration hook's command (`outbound migrate`) is run here against the test's
database, then its Job is marked complete as the Job controller would; the operator runs as a local
process with the environment the chart gives its Deployment.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kube.operator.support import OperatorProcess, condition, eventually, get
from tests.kube.plane import ControlPlane
from tests.unit.helm.chart import render

from .support import can_i, helm, helm_with_hook, objects_of, release_args, token_kubeconfig, uninstall, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("crds")]

SANDBOX = {"channel": "SMS", "provider": "sandbox", "priority": 100, "endpoint": "http://sandbox:8025"}
LOCAL_PORTS = ("OUTBOUND_OPERATOR_METRICS_PORT", "OUTBOUND_OPERATOR_HEALTH_PORT")


def chart_operator_env(values: dict[str, Any], release: str, namespace: str, index: int = 1) -> dict[str, str]:
    """The operator StatefulSet's plain environment as the chart renders it (Secret refs resolved by the
    test), with what the downward API gives pod `index`: its name as kopf's POD_ID and its index as
    the peering priority."""
    [statefulset] = [
        d
        for d in render(values, release=release, namespace=namespace)
        if d["metadata"]["name"].endswith("-operator") and d["kind"] == "StatefulSet"
    ]
    env = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
    plain = {e["name"]: e["value"] for e in env if "value" in e and e["name"] not in LOCAL_PORTS}
    downward = {"OUTBOUND_OPERATOR_PRIORITY": str(index), "POD_ID": f"{statefulset['metadata']['name']}-{index}"}
    fields = {e["valueFrom"]["fieldRef"]["fieldPath"] for e in env if "fieldRef" in e.get("valueFrom", {})}
    assert fields == {"metadata.name", "metadata.labels['apps.kubernetes.io/pod-index']"}, fields
    return {**plain, **downward}


def run_migration(plane: ControlPlane, dsn: str) -> None:
    """The migration hook's pod: `outbound migrate` on the test's database."""
    env = {**plane.env(), "DATABASE_URL": dsn}
    argv = [sys.executable, "-m", "outbound_sender.cli", "migrate"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def spec_managers(obj: dict[str, Any]) -> set[str]:
    """Field managers that own anything under spec."""
    return {m["manager"] for m in obj["metadata"].get("managedFields", []) if "f:spec" in m.get("fieldsV1", {})}


@dataclass
class SandboxRelease:
    release: str
    full: str
    values: dict[str, Any]
    installed: subprocess.CompletedProcess[str]
    kubeconfig: Path  # the chart's operator ServiceAccount, its RBAC in force


def install_sandbox_release(
    plane: ControlPlane, namespace: str, db_dsn: str, tmp_path: Path, prefix: str
) -> SandboxRelease:
    """The database Secret, then `helm install` with a sandbox ChannelProvider and its migration hook."""
    release = f"{prefix}-{secrets.token_hex(3)}"
    full = f"{release}-outbound-messaging"
    plane.kubectl("create", "secret", "generic", "outbound-database", f"--from-literal=url={db_dsn}", "-n", namespace)
    # The sandbox listens over http: only an operator allowed to use it runs a worker for it.
    values: dict[str, Any] = {
        "channelProviders": {"sms-sandbox": SANDBOX},
        "operator": {"allowInsecureSandboxEndpoint": True},
    }
    args = release_args(release, namespace, tmp_path, values)
    installed = helm_with_hook(
        plane, namespace, f"{full}-migrate", lambda: run_migration(plane, db_dsn), "install", *args
    )
    kubeconfig = token_kubeconfig(plane, namespace, f"{full}-operator", tmp_path / "operator.kubeconfig")
    wait_for(
        lambda: can_i(plane, kubeconfig, "watch", "channelproviders.messaging.outbound.dev", namespace), "RBAC in force"
    )
    return SandboxRelease(release, full, values, installed, kubeconfig)


# The garbage collector learns new CRD kinds by periodic discovery (30 s): on a fresh plane the
# owned worker objects can take that long to follow their ChannelProvider.
@pytest.mark.timeout(240)
async def test_chart_flow_operator_reconciles_under_the_chart_rbac(
    plane: ControlPlane, namespace: str, db_dsn: str, tmp_path: Path
) -> None:
    installed = install_sandbox_release(plane, namespace, db_dsn, tmp_path, "qs")
    release, full, values, kubeconfig = installed.release, installed.full, installed.values, installed.kubeconfig
    assert "sms-sandbox" in installed.installed.stdout  # NOTES

    operator = OperatorProcess(plane, namespace, db_dsn, kubeconfig, tmp_path)
    operator.settings = chart_operator_env(values, release, namespace)
    # Peered as the chart runs it (its environment), in the KopfPeering the chart created.
    operator.start()
    try:
        plane.kubectl(
            "wait", "channelprovider", "--all", "--for=condition=Reconciled", "--timeout=60s", "-n", namespace
        )
        worker = await eventually(lambda: get(plane, namespace, "deployment", "sms-sandbox-sender"))
        pod = worker["spec"]["template"]["spec"]
        chart_api = next(
            d
            for d in render(values, release=release, namespace=namespace)
            if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{full}-api"
        )
        assert pod["containers"][0]["image"] == chart_api["spec"]["template"]["spec"]["containers"][0]["image"]
        assert pod["serviceAccountName"] == f"{full}-sender"
        database = next(e for e in pod["containers"][0]["env"] if e["name"] == "DATABASE_URL")
        assert database["valueFrom"]["secretKeyRef"] == {"name": "outbound-database", "key": "url"}

        # GitOps: the operator never writes spec, so the desired state stays helm's alone.
        provider = get(plane, namespace, "channelprovider", "sms-sandbox")
        assert provider is not None
        assert provider["metadata"]["generation"] == 1
        assert provider["spec"]["priority"] == 100
        fields = plane.kubectl_json("get", "channelprovider", "sms-sandbox", "-n", namespace, "--show-managed-fields")
        assert spec_managers(fields) == {"helm"}
        assert condition(provider, "Reconciled")["status"] == "True"

        values["channelProviders"]["sms-sandbox"] = {**SANDBOX, "priority": 50}
        helm(plane, "upgrade", *release_args(release, namespace, tmp_path, values), "--no-hooks")
        await eventually(
            lambda: (
                condition(get(plane, namespace, "channelprovider", "sms-sandbox"), "Reconciled").get(
                    "observedGeneration"
                )
                == 2
            ),
            timeout=30,
        )

        # The pre-delete hook deletes the ChannelProvider while the operator can still remove its finalizer.
        uninstall(plane, namespace, release, tmp_path)
        assert get(plane, namespace, "channelprovider", "sms-sandbox") is None
    finally:
        operator.stop()
        print(f"---- operator log ----\n{operator.log()[-4000:]}")
    assert objects_of(plane, namespace, release) == set()
    if plane.has_controller_manager:  # owned worker objects go with their ChannelProvider (garbage collection)
        await eventually(
            lambda: (
                not plane.kubectl_json(
                    "get", "deployments,configmaps", "-n", namespace, "-l", "app.kubernetes.io/name=outbound-sender"
                )["items"]
            ),
            timeout=120,
        )
