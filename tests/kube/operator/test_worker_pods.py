"""What a cluster needs to run the workers, through the real API server: pull secrets, node selection,
tolerations, affinity, extra environment and log level from the ChannelProvider (pull secrets also from
the operator's settings), and a PodDisruptionBudget owned by the ChannelProvider."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.kube.manifests import channel_provider
from tests.kube.plane import ControlPlane, KubectlError
from tests.processes import sandbox_process

from .support import OperatorProcess, condition, eventually, get
from .workers import FAST_WORKER_ENV, enqueue_many, worker_log

pytestmark = [pytest.mark.kube]

PLACED: dict[str, Any] = {
    "channel": "SMS",
    "provider": "sandbox",
    "endpoint": "http://127.0.0.1:9",
    "imagePullSecrets": [{"name": "team-registry"}],
    "nodeSelector": {"pool": "messaging"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "messaging", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "sms"}},
                    },
                }
            ]
        }
    },
    "env": [
        {"name": "OUTBOUND_WORKER_POLL_INTERVAL_MS", "value": "500"},
        {"name": "SENTRY_DSN", "valueFrom": {"secretKeyRef": {"name": "sentry", "key": "dsn"}}},
    ],
    "logLevel": "DEBUG",
}


def _ready(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return condition(get(plane, namespace, "channelprovider", name), "Ready")


def _applied(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return condition(get(plane, namespace, "channelprovider", name), "Reconciled")


async def test_placement_pull_secrets_env_and_log_level_reach_the_worker_deployment_with_its_budget(
    plane: ControlPlane, namespace: str, operator_process: OperatorProcess
) -> None:
    operator_process.settings["OUTBOUND_OPERATOR_WORKER_IMAGE_PULL_SECRETS"] = "shared-registry"
    operator_process.start()
    plane.apply(channel_provider("sms", PLACED), namespace=namespace)
    await eventually(lambda: _applied(plane, namespace, "sms").get("status") == "True", timeout=30)
    deployment = get(plane, namespace, "deployment", "sms-sender")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "shared-registry"}, {"name": "team-registry"}]
    assert pod["nodeSelector"] == {"pool": "messaging"}
    assert pod["tolerations"] == PLACED["tolerations"]
    assert pod["affinity"] == PLACED["affinity"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["OUTBOUND_WORKER_POLL_INTERVAL_MS"]["value"] == "500"
    assert env["SENTRY_DSN"]["valueFrom"]["secretKeyRef"] == {"name": "sentry", "key": "dsn"}
    config = get(plane, namespace, "configmap", "sms-sender-config")
    assert config is not None
    assert config["data"]["OUTBOUND_LOG_LEVEL"] == "DEBUG"

    # Applied, but no node runs the pod: not Ready, and the metric the alert reads says so.
    ready_series = f'outbound_operator_provider_ready{{namespace="{namespace}",provider="sms"}}'
    await eventually(lambda: f"{ready_series} 0.0" in operator_process.metrics(), timeout=30)

    budget = get(plane, namespace, "poddisruptionbudget", "sms-sender")
    assert budget is not None
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    owner = get(plane, namespace, "channelprovider", "sms")
    assert owner is not None
    [ref] = budget["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("ChannelProvider", owner["metadata"]["uid"], True)

    # A changed placement converges (no restart of the operator), and so does a budget deleted by hand.
    patch = '{"spec":{"nodeSelector":{"pool":"bulk"},"logLevel":"WARNING"}}'
    plane.kubectl("patch", "cp", "sms", "-n", namespace, "--type", "merge", "-p", patch)

    def moved() -> bool:
        live = get(plane, namespace, "deployment", "sms-sender") or {}
        cfg = get(plane, namespace, "configmap", "sms-sender-config") or {}
        selector = live.get("spec", {}).get("template", {}).get("spec", {}).get("nodeSelector")
        return bool(selector == {"pool": "bulk"} and cfg.get("data", {}).get("OUTBOUND_LOG_LEVEL") == "WARNING")

    await eventually(moved, timeout=30)
    plane.kubectl("delete", "pdb", "sms-sender", "-n", namespace)
    await eventually(lambda: get(plane, namespace, "poddisruptionbudget", "sms-sender") is not None, timeout=30)


async def test_extra_env_naming_an_operator_variable_is_refused_with_its_reason(
    plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    spec = {**PLACED, "env": [{"name": "DATABASE_URL", "value": "postgresql://elsewhere/db"}]}
    plane.apply(channel_provider("sms", spec), namespace=namespace)
    ready = await eventually(lambda: _ready(plane, namespace, "sms") or None, timeout=30)
    assert (ready["status"], ready["reason"]) == ("False", "EnvNotAllowed")
    assert "DATABASE_URL" in ready["message"]
    assert get(plane, namespace, "deployment", "sms-sender") is None
    # What the OutboundChannelProviderNotReady alert reads; the error counter exists before any error.
    metrics = operator.metrics()
    assert f'outbound_operator_provider_ready{{namespace="{namespace}",provider="sms"}} 0.0' in metrics
    assert 'outbound_operator_reconcile_total{kind="QuotaPolicy",result="error"} 0.0' in metrics
    plane.kubectl("delete", "cp", "sms", "-n", namespace)
    series = re.compile(r'^outbound_operator_provider_ready\{[^}]*provider="sms"', re.MULTILINE)
    await eventually(lambda: series.search(operator.metrics()) is None, timeout=30)


def test_an_env_entry_needs_exactly_one_of_value_and_value_from(
    plane: ControlPlane, namespace: str, crds: list[str]
) -> None:
    both = {"name": "X", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    with pytest.raises(KubectlError, match="give exactly one of value and valueFrom"):
        plane.apply(
            channel_provider("sms", {"channel": "SMS", "provider": "sandbox", "env": [both]}), namespace=namespace
        )


@pytest.mark.usefixtures("operator")
async def test_log_level_decides_what_the_rendered_worker_logs(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    tmp_path: Path,
    rendered_workers: Callable[[str], AbstractContextManager[None]],
) -> None:
    """logLevel WARNING: a worker that sends says nothing at INFO; without it, it announces its start."""
    with sandbox_process(latency_ms=5) as url:
        # quiet is the channel's preferred provider (it sends); chatty only has to start.
        for name, level in (("quiet", {"logLevel": "WARNING", "priority": 10}), ("chatty", {"priority": 20})):
            spec = {"channel": "SMS", "provider": "sandbox", "endpoint": url, "env": FAST_WORKER_ENV, **level}
            plane.apply(channel_provider(name, spec), namespace=namespace)
        deployments = ("quiet-sender", "chatty-sender")
        await eventually(lambda: all(get(plane, namespace, "deployment", d) for d in deployments), timeout=30)
        await enqueue_many(db, 5)
        with rendered_workers("quiet"):
            await eventually(lambda: _sent(db, 5), timeout=60)
        with rendered_workers("chatty"):
            await eventually(lambda: "OutboundJobWorker started" in worker_log(tmp_path, "chatty").read_text(), 60)
    quiet = worker_log(tmp_path, "quiet").read_text()
    assert "OutboundJobWorker started" not in quiet, quiet[-2000:]
    assert "level=INFO" not in quiet, quiet[-2000:]


async def _sent(db: asyncpg.Connection, count: int) -> bool:
    sent = await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'SENT'")
    return bool(sent == count)
