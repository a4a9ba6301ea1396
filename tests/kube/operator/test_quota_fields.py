"""QuotaPolicy fields on a running worker: the WhatsApp worker the operator rendered for a ChannelProvider,
against the policy rows the operator wrote from each QuotaPolicy.

- pairRateSeconds: a second message to the same recipient waits for its slot (0: no pair limit);
- messagesPerSecond: the number's throughput paces the sends;
- deferNonUrgentAbovePercent and urgentTemplates: above the threshold only urgent templates go out;
- fallbackChannel: above it, messages with a body move to SMS instead of waiting;
- resetPeriod: a message held at the limit goes out when the period rolls over;
- tier: without dailyLimit the tier's limit is the one the worker enforces (Unlimited: none), and a
  dailyLimit beside a tier takes its place.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.kube.manifests import channel_provider, quota_policy
from tests.kube.plane import ControlPlane
from tests.processes import sandbox_process

from .support import eventually, get
from .workers import FAST_WORKER_ENV

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("operator")]
Workers = Callable[[str], AbstractContextManager[None]]
QUOTA_CRD = Path(__file__).resolve().parents[3] / "crds" / "quotapolicies.messaging.outbound.dev.yaml"


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


# Meta's messaging-limit tiers (docs/quota.md), written out here rather than read from the operator.
TIERS: dict[str, int | None] = {
    "Tier250": 250,
    "Tier1K": 1000,
    "Tier10K": 10_000,
    "Tier100K": 100_000,
    "Unlimited": None,
}
ALLOWANCE = 2  # conversations left in the period when the messages arrive
SENDS = 5  # messages to new recipients per organisation


def _tier_enum() -> list[str]:
    crd = yaml.safe_load(QUOTA_CRD.read_text())
    [version] = crd["spec"]["versions"]
    return list(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["tier"]["enum"])


def _org(name: str) -> str:
    return name.lower().replace("tier", "tier-")


async def _outcome(db: asyncpg.Connection, org: str) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT status || coalesce('/' || error_code, '') AS state, count(*) AS n FROM outbound_message"
        " WHERE org_id = $1 GROUP BY 1",
        org,
    )
    return {row["state"]: row["n"] for row in rows}


async def test_the_tier_is_the_limit_the_worker_enforces_unless_a_daily_limit_takes_its_place(
    plane: ControlPlane, namespace: str, db: asyncpg.Connection, whatsapp_worker: str, rendered_workers: Workers
) -> None:
    """Every tier of the CRD, each for an organisation of its own, with no dailyLimit; and two
    policies whose dailyLimit takes the place of the tier (below a named tier, and with Unlimited).

    Each organisation has used all but ALLOWANCE conversations of its limit when SENDS messages to
    new recipients arrive: exactly ALLOWANCE are sent and the others are held (QUEUED with the
    runbook's QUOTA_EXCEEDED, no attempt burnt) until the period resets; with Unlimited all are sent.
    Using 99,998 conversations through the product would take a day of sends, so the usage is
    written into the ledger row itself, whatsapp_rate_limit.messages_sent_count in the current period:
    the very state that many reservations leave behind (each send adds one to that column, nothing
    else records it), and the only input of the worker's decision besides quota_limit, which the
    operator wrote from the policy. Unlimited starts above the largest tier.
    """
    assert sorted(_tier_enum()) == sorted(TIERS), "a tier of the CRD this test does not know"
    specs: dict[str, dict[str, Any]] = {_org(tier): {"tier": tier} for tier in TIERS}
    specs["override-1k"] = {"tier": "Tier1K", "dailyLimit": 500}
    specs["override-unlimited"] = {"tier": "Unlimited", "dailyLimit": 300}
    limits: dict[str, int | None] = {_org(tier): limit for tier, limit in TIERS.items()}
    limits |= {"override-1k": 500, "override-unlimited": 300}
    await _policies(plane, namespace, db, specs)
    rows = "SELECT count(*) FROM whatsapp_rate_limit WHERE org_id = ANY($1::text[])"
    await eventually(lambda: _equals(db.fetchval(rows, list(specs)), len(specs)), timeout=30)
    for i, (org, limit) in enumerate(limits.items()):
        used = 100_000 if limit is None else limit - ALLOWANCE
        await db.execute("UPDATE whatsapp_rate_limit SET messages_sent_count = $2 WHERE org_id = $1", org, used)
        # Recipients of their own: the pair rate (per number and recipient) must not hold any.
        await _send(db, org, [f"+1555129{i}{n:03d}" for n in range(SENDS)])

    expected = {
        org: {"SENT": SENDS} if limit is None else {"SENT": ALLOWANCE, "QUEUED/QUOTA_EXCEEDED": SENDS - ALLOWANCE}
        for org, limit in limits.items()
    }

    async def settled() -> bool:
        return all([await _outcome(db, org) == outcome for org, outcome in expected.items()])

    with rendered_workers(whatsapp_worker):
        try:
            await eventually(settled, timeout=90)
        except AssertionError:
            assert {org: await _outcome(db, org) for org in expected} == expected
        await asyncio.sleep(2)  # nothing more goes out while the worker keeps polling
    assert {org: await _outcome(db, org) for org in expected} == expected

    ledger = {
        r["org_id"]: r for r in await db.fetch("SELECT * FROM whatsapp_rate_limit WHERE org_id = ANY($1)", list(specs))
    }
    for org, limit in limits.items():
        if limit is not None:  # the period's quota exactly used, the held ones not counted
            assert (ledger[org]["messages_sent_count"], ledger[org]["quota_limit"]) == (limit, limit), org
    held = await db.fetch(
        "SELECT org_id, error_message FROM outbound_message WHERE status = 'QUEUED' AND org_id = ANY($1)", list(specs)
    )
    assert all(f"quota {limits[r['org_id']]}/{limits[r['org_id']]} used" in r["error_message"] for r in held), held
    # None lost, none sent twice: one SENT attempt per sent message, none for a held one.
    attempts = await db.fetch(
        "SELECT m.status, count(a.id) FILTER (WHERE a.outcome = 'SENT') AS sends FROM outbound_message m"
        " LEFT JOIN outbound_attempt a ON a.outbound_message_id = m.id WHERE m.org_id = ANY($1) GROUP BY m.id",
        list(specs),
    )
    assert len(attempts) == SENDS * len(specs)
    assert all(r["sends"] == (1 if r["status"] == "SENT" else 0) for r in attempts), attempts
