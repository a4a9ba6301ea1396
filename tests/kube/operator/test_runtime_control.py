"""Runtime control end to end: kubectl -> operator -> provider_control -> a running worker process.

Each test runs the operator (as its ServiceAccount) and the `outbound worker` processes the operator
rendered (arguments and environment read from its Deployment and ConfigMap, workers.rendered_worker)
against the same PostgreSQL database, with the generic sandbox as the provider.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import asyncpg
import pytest

from tests.kube.manifests import channel_provider
from tests.kube.plane import ControlPlane
from tests.processes import sandbox_process

from .support import at_least, condition, controlled, equals, eventually, get, patch_spec, reasons
from .workers import FAST_WORKER_ENV, calls_by, enqueue_many, sandbox_config, statuses

pytestmark = [pytest.mark.kube]


@pytest.fixture
def sandbox() -> Iterator[str]:
    with sandbox_process(latency_ms=100) as url:
        yield url


def sms_provider(name: str, priority: int, url: str, **more: Any) -> dict[str, Any]:
    spec = {"channel": "SMS", "provider": "sandbox", "priority": priority, "endpoint": url, "env": FAST_WORKER_ENV}
    return channel_provider(name, {**spec, **more})


@pytest.mark.usefixtures("operator")
async def test_force_open_stops_sends_within_the_bound_and_loses_nothing(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    sandbox: str,
    rendered_workers: Callable[[str], AbstractContextManager[None]],
) -> None:
    plane.apply(sms_provider("primary", 10, sandbox), namespace=namespace)
    await controlled(plane, namespace, db, "primary")
    await enqueue_many(db, 3000)
    with rendered_workers("primary"):
        await eventually(lambda: at_least(calls_by(db, "primary"), 200), timeout=30)
        patched_at: dt.datetime = await db.fetchval("SELECT clock_timestamp()")
        patch_spec(plane, namespace, "primary", '{"spec":{"circuitBreaker":{"mode":"ForceOpen"}}}')
        await asyncio.sleep(6)
        last_call: dt.datetime = await db.fetchval(
            "SELECT max(started_at) FROM outbound_attempt WHERE provider = 'primary'"
        )
        queued = (await statuses(db)).get("QUEUED", 0)
    stopped_after = (last_call - patched_at).total_seconds()
    print(f"ForceOpen: last provider call started {stopped_after:.3f} s after kubectl patch")
    assert stopped_after < 5.0
    assert queued > 0, "the queue drained before the patch: the test measured nothing"
    final = await statuses(db)
    assert set(final) <= {"SENT", "QUEUED"}
    assert sum(final.values()) == 3000
    opened = await eventually(
        lambda: condition(get(plane, namespace, "channelprovider", "primary"), "CircuitOpen").get("status") == "True"
    )
    assert opened
    assert condition(get(plane, namespace, "channelprovider", "primary"), "CircuitOpen")["reason"] == "ForcedOpen"
    assert "ForcedOpen" in reasons(plane, namespace, "primary")


@pytest.mark.usefixtures("operator")
async def test_disable_leaves_messages_queued_and_enable_sends_them(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    sandbox: str,
    rendered_workers: Callable[[str], AbstractContextManager[None]],
) -> None:
    plane.apply(sms_provider("primary", 10, sandbox, enabled=False), namespace=namespace)
    await controlled(plane, namespace, db, "primary")
    await enqueue_many(db, 50)
    with rendered_workers("primary"):
        await asyncio.sleep(3)
        assert await statuses(db) == {"QUEUED": 50}
        assert await calls_by(db, "primary") == 0
        patch_spec(plane, namespace, "primary", '{"spec":{"enabled":true}}')
        await eventually(lambda: equals(statuses(db), {"SENT": 50}), timeout=30)


@pytest.mark.usefixtures("operator")
async def test_failover_to_the_backup_provider_by_priority(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    sandbox: str,
    rendered_workers: Callable[[str], AbstractContextManager[None]],
) -> None:
    plane.apply([sms_provider("primary", 10, sandbox), sms_provider("backup", 20, sandbox)], namespace=namespace)
    await controlled(plane, namespace, db, "primary", "backup")
    with rendered_workers("primary"), rendered_workers("backup"):
        await enqueue_many(db, 100)
        await eventually(lambda: equals(statuses(db), {"SENT": 100}), timeout=30)
        assert await calls_by(db, "backup") == 0  # the backup stands by while the primary is usable
        patch_spec(plane, namespace, "primary", '{"spec":{"circuitBreaker":{"mode":"ForceOpen"}}}')
        await eventually(lambda: condition(get(plane, namespace, "channelprovider", "primary"), "CircuitOpen"))
        await asyncio.sleep(1)
        primary_calls = await calls_by(db, "primary")
        await enqueue_many(db, 100)
        await eventually(lambda: equals(statuses(db), {"SENT": 200}), timeout=30)
        assert await calls_by(db, "primary") == primary_calls
        assert await calls_by(db, "backup") == 100


@pytest.mark.usefixtures("operator")
async def test_auto_circuit_trips_on_failures_and_recovers_through_half_open(
    plane: ControlPlane,
    namespace: str,
    db: asyncpg.Connection,
    sandbox: str,
    rendered_workers: Callable[[str], AbstractContextManager[None]],
) -> None:
    breaker = {"window": "30s", "minimumRequests": 10, "coolDown": "3s", "halfOpenProbesPerMinute": 60}
    plane.apply(sms_provider("primary", 10, sandbox, circuitBreaker=breaker), namespace=namespace)
    await controlled(plane, namespace, db, "primary")
    sandbox_config(sandbox, failure_rate=0.8, latency_ms=20)
    await enqueue_many(db, 200)
    with rendered_workers("primary"):
        await eventually(lambda: _state(plane, namespace) == "Open", timeout=30)
        sandbox_config(sandbox, failure_rate=0.0)
        await eventually(lambda: _state(plane, namespace) == "HalfOpen", timeout=15)
        await eventually(lambda: _state(plane, namespace) == "Closed", timeout=30)
        await eventually(lambda: equals(statuses(db), {"SENT": 200}), timeout=60)
    seen = reasons(plane, namespace, "primary")
    assert {"FailureRateAboveThreshold", "CoolDownElapsed", "ProbesSucceeded"} <= set(seen)
    cp = get(plane, namespace, "channelprovider", "primary")
    assert condition(cp, "CircuitOpen")["status"] == "False"


def _state(plane: ControlPlane, namespace: str) -> str:
    cp = get(plane, namespace, "channelprovider", "primary") or {}
    return str(((cp.get("status") or {}).get("circuit") or {}).get("state"))
