"""QuotaPolicy fields on a running worker: the WhatsApp worker the operator rendered for a ChannelProvider,
against the policy rows the operator wrote from each QuotaPolicy.

- pairRateSeconds: a second message to the same recipient waits for its slot (0: no pair limit);
- messagesPerSecond: the number's throughput paces the sends;
- deferNonUrgentAbovePercent and urgentTemplates: above the threshold only urgent templates go out;
- fallbackChannel: above it, messages with a body move to SMS instead of waiting;
- resetPeriod: a message held at the limit goes out when the period rolls over.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import asyncpg
import pytest

from tests.kube.manifests import channel_provider, quota_policy
from tests.kube.plane import ControlPlane
from tests.processes import sandbox_process

from .support import eventually, get
from .workers import FAST_WORKER_ENV

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("operator")]
Workers = Callable[[str], AbstractContextManager[None]]


@pytest.fixture
def whatsapp_worker(plane: ControlPlane, namespace: str) -> Iterator[str]:
    """A WHATSAPP ChannelProvider (generic sandbox) whose rendered worker the test starts."""
    with sandbox_process(latency_ms=5) as url:
        spec = {"channel": "WHATSAPP", "provider": "sandbox", "endpoint": url, "env": FAST_WORKER_ENV}
        plane.apply(channel_provider("wa", spec), namespace=namespace)
        yield "wa"


async def _policies(plane: ControlPlane, namespace: str, db: asyncpg.Connection, specs: dict[str, Any]) -> None:
    plane.apply([quota_policy(org, {"orgId": org, **spec}) for org, spec in specs.items()], namespace=namespace)
    query = "SELECT count(*) FROM whatsapp_quota_policy WHERE org_id = ANY($1::text[])"
    await eventually(lambda: _equals(db.fetchval(query, list(specs)), len(specs)), timeout=30)
    await eventually(lambda: get(plane, namespace, "deployment", "wa-sender"), timeout=30)


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _send(db: asyncpg.Connection, org: str, recipients: list[str], template: str = "order_update") -> None:
    await db.executemany(
        "INSERT INTO outbound_message (org_id, channel, to_recipient, template_code) VALUES ($1, 'WHATSAPP', $2, $3)",
        [(org, recipient, template) for recipient in recipients],
    )


async def _sent(db: asyncpg.Connection, org: str, template: str | None = None) -> int:
    query = "SELECT count(*) FROM outbound_message WHERE org_id = $1 AND status = 'SENT'"
    if template is None:
        count: int = await db.fetchval(query, org)
    else:
        count = await db.fetchval(query + " AND template_code = $2", org, template)
    return count


async def _sent_is(db: asyncpg.Connection, org: str, expected: int, template: str | None = None) -> bool:
    return await _sent(db, org, template) == expected


async def test_pair_rate_and_throughput_of_the_policy_pace_the_worker(
    plane: ControlPlane, namespace: str, db: asyncpg.Connection, whatsapp_worker: str, rendered_workers: Workers
) -> None:
    unlimited = {"tier": "Tier10K", "dailyLimit": 10_000}
    policies = {
        "paired": {**unlimited, "pairRateSeconds": 600},
        "unpaired": {**unlimited, "pairRateSeconds": 0},
        "slow": {**unlimited, "messagesPerSecond": 1, "pairRateSeconds": 0},
    }
    await _policies(plane, namespace, db, policies)
    # The pair limit is the number's, per recipient: each organisation writes to a recipient of its own.
    await _send(db, "paired", ["+15551230001"] * 3)
    await _send(db, "unpaired", ["+15551230002"] * 3)
    with rendered_workers(whatsapp_worker):
        await eventually(lambda: _sent_is(db, "unpaired", 3), timeout=60)
        await eventually(lambda: _sent_is(db, "paired", 1), timeout=60)
        await asyncio.sleep(3)
        assert await _sent(db, "paired") == 1  # the other two wait for the recipient's 600 s slot

        await _send(db, "slow", [f"+1555124{i:04d}" for i in range(5)])
        await eventually(lambda: _sent_is(db, "slow", 5), timeout=60)
    spread = float(
        await db.fetchval(
            "SELECT extract(epoch FROM max(sent_at) - min(sent_at)) FROM outbound_message WHERE org_id = 'slow'"
        )
    )
    print(f"5 sends at messagesPerSecond 1 spread over {spread:.2f} s")
    assert spread >= 3.5  # one a second: four intervals (the default 80/s sends them within a blink)


async def test_above_the_deferral_threshold_only_urgent_templates_are_sent(
    plane: ControlPlane, namespace: str, db: asyncpg.Connection, whatsapp_worker: str, rendered_workers: Workers
) -> None:
    policy = {
        "tier": "Tier250",
        "dailyLimit": 4,
        "alertThresholds": [50],
        "deferNonUrgentAbovePercent": 50,
        "urgentTemplates": ["urgent_alert"],
    }
    await _policies(plane, namespace, db, {"near": policy})
    await _send(db, "near", [f"+1555125{i:04d}" for i in range(4)])
    with rendered_workers(whatsapp_worker):
        await eventually(lambda: _sent_is(db, "near", 2), timeout=60)
        await asyncio.sleep(3)
        assert await _sent(db, "near") == 2  # 50 % of 4: the other two non-urgent ones are deferred
        await _send(db, "near", ["+15551259999"], template="urgent_alert")
        await eventually(lambda: _sent_is(db, "near", 1, "urgent_alert"), timeout=60)
    assert await _sent(db, "near", "order_update") == 2


async def test_above_the_deferral_threshold_a_fallback_channel_takes_the_messages(
    plane: ControlPlane, namespace: str, db: asyncpg.Connection, whatsapp_worker: str, rendered_workers: Workers
) -> None:
    policy = {"tier": "Tier250", "dailyLimit": 4, "alertThresholds": [50], "deferNonUrgentAbovePercent": 50}
    await _policies(plane, namespace, db, {"rerouted": {**policy, "fallbackChannel": "SMS"}, "kept": policy})
    for org in ("rerouted", "kept"):
        await db.executemany(
            "INSERT INTO outbound_message (org_id, channel, to_recipient, body) VALUES ($1, 'WHATSAPP', $2, 'hello')",
            [(org, f"+1555126{i:04d}") for i in range(4)],
        )
    moved = "SELECT count(*) FROM outbound_message WHERE org_id = $1 AND channel = 'SMS' AND status = 'QUEUED'"
    with rendered_workers(whatsapp_worker):
        await eventually(lambda: _sent_is(db, "rerouted", 2), timeout=60)
        await eventually(lambda: _sent_is(db, "kept", 2), timeout=60)
        await eventually(lambda: _equals(db.fetchval(moved, "rerouted"), 2), timeout=60)
        await asyncio.sleep(3)
    assert await db.fetchval(moved, "kept") == 0  # fallbackChannel None: they wait on WHATSAPP
    kept = await db.fetchval("SELECT count(*) FROM outbound_message WHERE org_id = 'kept' AND channel = 'WHATSAPP'")
    assert kept == 4


async def test_the_reset_period_releases_messages_held_at_the_limit(
    plane: ControlPlane, namespace: str, db: asyncpg.Connection, whatsapp_worker: str, rendered_workers: Workers
) -> None:
    """dailyLimit 1 per resetPeriod 1m: the second message waits for the next period, then goes."""
    await _policies(plane, namespace, db, {"minute": {"tier": "Tier250", "dailyLimit": 1, "resetPeriod": "1m"}})
    await _send(db, "minute", ["+15551270001", "+15551270002"])
    with rendered_workers(whatsapp_worker):
        await eventually(lambda: _sent_is(db, "minute", 1), timeout=60)
        first: dt.datetime = await db.fetchval("SELECT min(sent_at) FROM outbound_message WHERE org_id = 'minute'")
        await eventually(lambda: _sent_is(db, "minute", 2), timeout=150, interval=0.5)
    second: dt.datetime = await db.fetchval("SELECT max(sent_at) FROM outbound_message WHERE org_id = 'minute'")
    waited = (second - first).total_seconds()
    print(f"the second message went {waited:.1f} s after the first (resetPeriod 1m)")
    assert 5 <= waited <= 140  # held until the minute rolled over (the default 24h would hold it for a day)
