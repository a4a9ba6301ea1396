"""The chart's HA operator: its two replicas, with the environment the chart gives pods 0 and 1, meet
in the chart's KopfPeering; only pod 1 (the highest index) acts; when it is deleted (SIGTERM, as the
kubelet does) pod 0 takes over and reconciles the next ChannelProvider change.

No kubelet runs the operator image here: the replicas are local processes acting as the chart's
ServiceAccount under the chart's RBAC, which keeps this test fast and node-less. The same takeover
with the chart's pods on the test node (the leader pod deleted) is part of tests/kube/e2e.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.kube.operator.support import OperatorProcess, condition, eventually, get
from tests.kube.plane import ControlPlane

from .support import uninstall
from .test_operator_with_chart import chart_operator_env, install_sandbox_release

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("crds")]
TIMER = "Timer 'observe' succeeded"


def _ready_at(plane: ControlPlane, namespace: str, generation: int) -> bool:
    applied = condition(get(plane, namespace, "channelprovider", "sms-sandbox"), "Reconciled")
    return applied.get("status") == "True" and applied.get("observedGeneration") == generation


@pytest.mark.timeout(240)
async def test_the_charts_standby_replica_takes_over_when_the_leader_pod_is_deleted(
    plane: ControlPlane, namespace: str, db_dsn: str, tmp_path: Path
) -> None:
    installed = install_sandbox_release(plane, namespace, db_dsn, tmp_path, "ha")
    release, full, values, kubeconfig = installed.release, installed.full, installed.values, installed.kubeconfig

    replicas: list[OperatorProcess] = []
    for index in (0, 1):
        folder = tmp_path / f"operator-{index}"
        folder.mkdir()
        replica = OperatorProcess(plane, namespace, db_dsn, kubeconfig, folder)
        replica.settings = chart_operator_env(values, release, namespace, index)
        replicas.append(replica)
    standby, leader = replicas
    try:
        leader.start()  # first: a replica alone in the peering acts at once
        await eventually(lambda: TIMER in leader.log(), timeout=60)
        standby.start()

        def peers() -> dict[str, Any]:
            peering = plane.kubectl_json("get", "kopfpeering", f"{full}-operator", "-n", namespace)
            return dict(peering.get("status") or {})

        await eventually(lambda: set(peers()) == {f"{full}-operator-0", f"{full}-operator-1"}, timeout=60)
        await eventually(lambda: _ready_at(plane, namespace, 1), timeout=60)
        # The chart's log level is INFO: kopf logs each timer run and handled event of the acting
        # replica. Two more runs of the leader's timer with the standby registered: it ran none.
        ticks = leader.log().count(TIMER)
        await eventually(lambda: leader.log().count(TIMER) >= ticks + 2, timeout=60)
        assert TIMER not in standby.log()
        assert "is processed" not in standby.log()

        deleted = time.monotonic()
        leader.stop()  # the kubelet's SIGTERM of a deleted pod
        await eventually(lambda: "Resuming operations" in standby.log(), timeout=60)
        took_over = time.monotonic() - deleted
        plane.kubectl("patch", "cp", "sms-sandbox", "-n", namespace, "--type", "merge", "-p", '{"spec":{"priority":5}}')
        await eventually(lambda: _ready_at(plane, namespace, 2), timeout=60)
        reconciled = time.monotonic() - deleted
        assert set(peers()) == {f"{full}-operator-0"}  # the deleted replica left the peering
        uninstall(plane, namespace, release, tmp_path)  # its pre-delete hook needs the acting replica
        assert get(plane, namespace, "channelprovider", "sms-sandbox") is None
        print(
            f"takeover: standby resumed {took_over:.1f} s after the SIGTERM, the change was Ready at {reconciled:.1f} s"
        )
    finally:
        for replica in replicas:
            replica.stop()
        for index, replica in enumerate(replicas):
            print(f"---- operator-{index} ----\n{replica.log()[-3000:]}")
