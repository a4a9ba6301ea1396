"""HA: two operators in one kopf peering; the higher priority acts, the other pauses and takes over."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.kube.manifests import channel_provider
from tests.kube.plane import REPO_ROOT, ControlPlane

from .support import OperatorProcess, condition, eventually, get

pytestmark = [pytest.mark.kube]
PEERING_FILE = REPO_ROOT / "deploy" / "kopf-peering.yaml"
SPEC = {"channel": "SMS", "provider": "sandbox"}


def _install_peering(plane: ControlPlane, namespace: str) -> None:
    crds = [d for d in yaml.safe_load_all(PEERING_FILE.read_text()) if d and d["kind"] == "CustomResourceDefinition"]
    plane.apply(crds)
    plane.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=30s")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "outbound-operator"}}
    plane.apply(peering, namespace=namespace)


def _replica(
    plane: ControlPlane, namespace: str, dsn: str, kubeconfig: Path, folder: Path, *, priority: int
) -> OperatorProcess:
    folder.mkdir()
    process = OperatorProcess(plane, namespace, dsn, kubeconfig, folder)
    # Peered by the command line (the chart's environment is tests/kube/helm/test_operator_ha.py).
    process.settings["OUTBOUND_OPERATOR_STANDALONE"] = "false"
    process.peering = ["--priority", str(priority), "--peering", "outbound-operator"]
    return process


def _peers(plane: ControlPlane, namespace: str) -> dict[str, object]:
    peering = plane.kubectl_json("get", "kopfpeering", "outbound-operator", "-n", namespace)
    return dict(peering.get("status") or {})


def _ready(plane: ControlPlane, namespace: str, generation: int) -> bool:
    obj = get(plane, namespace, "channelprovider", "sms") or {}
    applied = condition(obj, "Reconciled")
    return applied.get("status") == "True" and applied.get("observedGeneration") == generation


async def test_the_higher_priority_acts_and_the_other_takes_over_when_it_stops(
    plane: ControlPlane, namespace: str, db_dsn: str, operator_kubeconfig: Path, tmp_path: Path
) -> None:
    _install_peering(plane, namespace)
    leader = _replica(plane, namespace, db_dsn, operator_kubeconfig, tmp_path / "leader", priority=100)
    standby = _replica(plane, namespace, db_dsn, operator_kubeconfig, tmp_path / "standby", priority=50)
    try:
        leader.start()
        standby.start()
        # kopf starts a peered operator paused and resumes it only while no higher priority is alive
        # (it logs "Pausing..." only on a transition, so the signal is both peers being registered).
        await eventually(lambda: len(_peers(plane, namespace)) == 2, timeout=30)
        plane.apply(channel_provider("sms", SPEC), namespace=namespace)
        await eventually(lambda: _ready(plane, namespace, 1), timeout=30)
        # Only the leader acts (by its handlers or its timer): only it writes the resource's status.
        assert "Merge-patching the status" in leader.log()
        assert "Merge-patching the status" not in standby.log()
        assert "Timer 'observe' is invoked" not in standby.log()
        leader.stop()
        await eventually(lambda: "Resuming operations" in standby.log(), timeout=60)
        plane.kubectl("patch", "cp", "sms", "-n", namespace, "--type", "merge", "-p", '{"spec":{"priority":5}}')
        await eventually(lambda: _ready(plane, namespace, 2), timeout=30)  # only the standby runs now
    finally:
        leader.stop()
        standby.stop()
        print(f"---- leader ----\n{leader.log()[-3000:]}\n---- standby ----\n{standby.log()[-3000:]}")
