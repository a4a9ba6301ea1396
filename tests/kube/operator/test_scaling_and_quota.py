"""Scaling on queue depth and QuotaPolicy, with the operator running against the real API server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import asyncpg
import pytest

from tests.kube.manifests import channel_provider, quota_policy
from tests.kube.plane import ControlPlane
from tests.processes import sandbox_process

from .support import OperatorProcess, condition, eventually, get, reasons
from .workers import FAST_WORKER_ENV, enqueue_many

pytestmark = [pytest.mark.kube]

IN_FLIGHT = """
UPDATE outbound_message SET status = 'SENDING', lease_owner = 'w', leased_until = now() + interval '1 hour'
 WHERE id = (SELECT min(id) FROM outbound_message WHERE status = 'QUEUED')
"""

SCALED: dict[str, Any] = {
    "channel": "SMS",
    "provider": "sandbox",
    "scaling": {
        "batchSize": {"min": 2, "max": 50, "initial": 10},
        "replicas": {"min": 1, "max": 4},
        "targetQueueDepthPerReplica": 10,
    },
}


@pytest.fixture
def scaling_operator(operator_process: OperatorProcess) -> OperatorProcess:
    operator_process.settings["OUTBOUND_OPERATOR_SCALE_DOWN_COOLDOWN_SECONDS"] = "2"
    operator_process.start()
    return operator_process


def _replicas(plane: ControlPlane, namespace: str) -> int:
    deployment = get(plane, namespace, "deployment", "sms-sender") or {}
    return int((deployment.get("spec") or {}).get("replicas", -1))


async def _set_depth(db: asyncpg.Connection, depth: int) -> None:
    """Exactly `depth` QUEUED messages: the rest are marked SENT (what workers would do)."""
    queued = await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'QUEUED'")
    if queued < depth:
        await enqueue_many(db, depth - queued)
    elif queued > depth:
        await db.execute(
            "UPDATE outbound_message SET status = 'SENT', sent_at = now() WHERE id IN "
            "(SELECT id FROM outbound_message WHERE status = 'QUEUED' ORDER BY id LIMIT $1)",
            queued - depth,
        )


async def _batch(db: asyncpg.Connection, expected: int) -> bool:
    return bool(await db.fetchval("SELECT batch_size FROM provider_control WHERE provider = 'sms'") == expected)


def _observed_depth(plane: ControlPlane, namespace: str, depth: int) -> bool:
    """The operator has reconciled at this queue depth (status is written after the Deployment)."""
    status = (get(plane, namespace, "channelprovider", "sms") or {}).get("status") or {}
    return bool(status.get("queueDepth") == depth)


async def test_replicas_and_batch_follow_queue_depth_without_flapping(
    plane: ControlPlane, namespace: str, scaling_operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    plane.apply(channel_provider("sms", SCALED), namespace=namespace)
    await eventually(lambda: _replicas(plane, namespace) == 1, timeout=60)
    # The first reconcile publishes the initial batch (10); an empty queue then moves it to the
    # minimum. Wait for that, or 35 / 4 = 9 would be within the 20 % band of 10 and never published.
    await eventually(lambda: _batch(db, 2), timeout=60)
    await _set_depth(db, 35)  # ceil(35 / 10) = 4
    await eventually(lambda: _replicas(plane, namespace) == 4, timeout=60)
    await eventually(lambda: _batch(db, 9), timeout=60)  # each of 4 replicas' share: ceil(35 / 4)
    await _set_depth(db, 12)  # ceil(12 / 10) = 2, and 12 * 1.1 still needs 2
    await eventually(lambda: _replicas(plane, namespace) == 2, timeout=60)
    for depth in (10, 11, 10, 11, 10, 11):  # around the 1/2-replica boundary
        await _set_depth(db, depth)
        await asyncio.sleep(0.7)
    await eventually(lambda: _observed_depth(plane, namespace, 11), timeout=60)
    await asyncio.sleep(3)  # past the cool-down
    assert _replicas(plane, namespace) == 2  # 10 * 1.1 > 10: within the tolerance band, no flapping
    changes = [r for r in reasons(plane, namespace, "sms") if r in {"ScaledUp", "ScaledDown"}]
    assert sorted(changes) == ["ScaledDown", "ScaledUp"], changes  # one up (1 -> 4), one down (4 -> 2)
    await db.execute(IN_FLIGHT)
    await _set_depth(db, 0)
    await eventually(lambda: _observed_depth(plane, namespace, 0), timeout=60)  # decided with a send in flight
    assert _replicas(plane, namespace) == 2  # a send in flight: never scale down
    await db.execute("UPDATE outbound_message SET status = 'SENT' WHERE status = 'SENDING'")
    await eventually(lambda: _replicas(plane, namespace) == 1, timeout=60)


async def test_external_replicas_are_left_alone(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    spec = {**SCALED, "scaling": {**SCALED["scaling"], "replicas": {"min": 1, "max": 4, "managedBy": "External"}}}
    plane.apply(channel_provider("sms", spec), namespace=namespace)
    await eventually(lambda: get(plane, namespace, "deployment", "sms-sender"))
    plane.kubectl("scale", "deployment/sms-sender", "--replicas=3", "-n", namespace)
    await _set_depth(db, 35)
    await eventually(lambda: _observed_depth(plane, namespace, 35), timeout=60)  # reconciled at this depth
    await asyncio.sleep(1)  # and a few timer passes more
    assert _replicas(plane, namespace) == 3  # the HPA's (here: kubectl's) value stands
    assert "DeploymentDrift" not in reasons(plane, namespace, "sms")


@pytest.fixture
def whatsapp_sandbox() -> Iterator[str]:
    with sandbox_process(latency_ms=5) as url:
        yield url


async def _ledger(db: asyncpg.Connection) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM whatsapp_rate_limit WHERE org_id = 'acme'")


async def _whatsapp(db: asyncpg.Connection, count: int) -> None:
    await db.execute(
        "INSERT INTO outbound_message (org_id, channel, to_recipient, template_code) "
        "SELECT 'acme', 'WHATSAPP', '+1555123' || lpad(i::text, 4, '0'), 'order_update' FROM generate_series(1, $1) i",
        count,
    )


def _status(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    return dict((get(plane, namespace, "quotapolicy", "acme") or {}).get("status") or {})


@pytest.mark.usefixtures("operator")
async def test_quota_policy_is_enforced_by_a_running_worker(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    whatsapp_sandbox: str,
    rendered_workers: Callable[[str], AbstractContextManager[None]],
) -> None:
    spec = {"orgId": "acme", "tier": "Tier250", "dailyLimit": 3, "alertThresholds": [50, 90]}
    plane.apply(quota_policy("acme", spec), namespace=namespace)
    ledger = await eventually(lambda: _ledger(db))
    assert ledger["quota_limit"] == 3
    policy = await db.fetchrow("SELECT * FROM whatsapp_quota_policy WHERE org_id = 'acme'")
    assert policy is not None
    assert (policy["daily_limit"], policy["alert_thresholds"]) == (3, [50, 90])
    await _whatsapp(db, 5)
    # The WhatsApp worker as the operator renders it for a ChannelProvider of the channel.
    worker = {"channel": "WHATSAPP", "provider": "sandbox", "endpoint": whatsapp_sandbox, "env": FAST_WORKER_ENV}
    plane.apply(channel_provider("wa", worker), namespace=namespace)
    await eventually(lambda: get(plane, namespace, "deployment", "wa-sender"), timeout=30)
    with rendered_workers("wa"):
        await eventually(lambda: _count(db, "SENT", 3), timeout=30)
        await asyncio.sleep(2)
        assert await _count(db, "QUEUED", 2)  # over the limit: deferred, not lost
        status = await eventually(lambda: _status(plane, namespace).get("used") == 3 and _status(plane, namespace))
        assert (status["remaining"], status["effectiveLimit"]) == (0, 3)
        assert status["throttledUntil"]
        warning = condition({"status": status}, "QuotaWarning")
        assert (warning["status"], warning["reason"]) == ("True", "UsageAbove90Percent")
        assert "UsageAbove90Percent" in reasons(plane, namespace, "acme")
        plane.kubectl(
            "patch", "quotapolicy", "acme", "-n", namespace, "--type", "merge", "-p", '{"spec":{"dailyLimit":4}}'
        )
        await eventually(lambda: _limit_is(db, 4))
        await _whatsapp(db, 1)  # the held ones wait for the period's reset; a new one fits the raised limit
        await eventually(lambda: _count(db, "SENT", 4), timeout=30)


async def _count(db: asyncpg.Connection, status: str, expected: int) -> bool:
    found = await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = $1", status)
    return bool(found == expected)


async def test_manual_quota_reduction_is_kept_and_reported(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, db: asyncpg.Connection
) -> None:
    plane.apply(quota_policy("acme", {"orgId": "acme", "tier": "Tier1K", "dailyLimit": 1000}), namespace=namespace)
    await eventually(lambda: _ledger(db))
    await db.execute("UPDATE whatsapp_rate_limit SET quota_limit = quota_limit * 0.5 WHERE org_id = 'acme'")  # runbook
    await eventually(lambda: "ManualQuotaOverride" in reasons(plane, namespace, "acme"))
    await asyncio.sleep(2)
    assert await _limit_is(db, 500)  # not reverted
    status = _status(plane, namespace)
    assert status["effectiveLimit"] == 500
    assert condition({"status": status}, "ManualOverride")["status"] == "True"
    await db.execute("UPDATE whatsapp_rate_limit SET quota_limit = 5000 WHERE org_id = 'acme'")  # above: drift
    await eventually(lambda: _limit_is(db, 1000))
    assert "QuotaLimitDrift" in reasons(plane, namespace, "acme")
    await db.execute("UPDATE whatsapp_rate_limit SET quota_limit = 300 WHERE org_id = 'acme'")
    await asyncio.sleep(2)
    plane.kubectl(
        "patch", "quotapolicy", "acme", "-n", namespace, "--type", "merge", "-p", '{"spec":{"dailyLimit":900}}'
    )
    await eventually(lambda: _limit_is(db, 900))  # a spec change restores the policy's value


async def _limit_is(db: asyncpg.Connection, limit: int) -> bool:
    row = await _ledger(db)
    return row is not None and row["quota_limit"] == limit
