"""Delivery callbacks end to end: the API registers a URL, the worker and the receipts write the
outbox, the dispatcher POSTs signed requests to a real HTTP server in the test."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import asyncpg

from outbound_sender.callbacks.settings import CallbackSettings
from outbound_sender.domain import Channel, DeliveryStatus, ErrorCode, OutboundMessage
from outbound_sender.errors import PermanentError
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import SendResult
from outbound_sender.store.db import connect
from outbound_sender.webhooks.events import DeliveryEvent
from outbound_sender.webhooks.store import record
from tests.integration.api.conftest import ORG, serving
from tests.integration.callbacks.receiver import dispatching, receiving, signatures, signed_by
from tests.workers import ScriptedProvider, enqueue_sms, running_worker, wait_for

FAST = CallbackSettings(
    allow_private=True, retry_base_ms=100, retry_max_ms=800, poll_interval_ms=50, timeout_seconds=30, max_attempts=20
)
BAD_NUMBER = "+15551239999"
ALL_SENT = "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'"


async def register(api_url: str, client: Any, url: str) -> str:
    response = await client.post("/v1/callbacks", json={"url": url, "description": "tests"})
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def receipt(message_id: int, status: DeliveryStatus, n: int, provider_code: str | None = None) -> DeliveryEvent:
    return DeliveryEvent(
        provider="scripted",
        channel=Channel.SMS,
        event_id=f"evt-{message_id}-{n}",
        raw_status=status.value.lower(),
        status=status,
        provider_message_id=None,
        outbound_id=message_id,
        occurred_at=dt.datetime.now(dt.UTC),
        error_code=ErrorCode.PERMANENT_ERROR if status is DeliveryStatus.UNDELIVERED else None,
        provider_code=provider_code,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


async def test_every_status_change_arrives_signed_with_the_providers_code(db: asyncpg.Connection, db_dsn: str) -> None:
    failing_code = "21211"

    def behaviour(message: OutboundMessage, _call: int) -> SendResult | Exception:
        if message.to_recipient == BAD_NUMBER:
            return PermanentError(ErrorCode.INVALID_PHONE_NUMBER, "bad number", provider_code=failing_code)
        return SendResult(f"sid-{message.id}", 201)

    metrics = Metrics()
    async with receiving() as receiver, serving(db_dsn, callbacks=FAST) as api, api.client() as client:
        secret = await register(api.url, client, receiver.url + "/hooks/outbound?x=1")
        [good] = await enqueue_sms(db, org_id=ORG)
        [bad] = await enqueue_sms(db, org_id=ORG, to=BAD_NUMBER)
        async with dispatching(db_dsn, FAST, metrics), running_worker(db_dsn, ScriptedProvider(behaviour)):
            await receiver.wait_for(2)
            await record(db, [receipt(good, DeliveryStatus.DELIVERED, 1)])
            await receiver.wait_for(3)
            await record(db, [receipt(good, DeliveryStatus.READ, 2)])
            await receiver.wait_for(4)
            [late] = await enqueue_sms(db, org_id=ORG)
            await receiver.wait_for(5)
            await record(db, [receipt(late, DeliveryStatus.UNDELIVERED, 3, provider_code="30006")])
            await receiver.wait_for(6)
    requests = receiver.requests
    assert all(signed_by(r, secret) for r in requests)
    assert all(signatures(r) == 1 for r in requests)
    assert all(r.path == "/hooks/outbound" for r in requests)
    events = [(r.document["message"]["message_id"], r.document["event"]) for r in requests]
    assert sorted(events) == sorted(
        [(good, "SENT"), (bad, "FAILED"), (good, "DELIVERED"), (good, "READ"), (late, "SENT"), (late, "FAILED")]
    )
    by_event = {(r.document["message"]["message_id"], r.document["event"]): r for r in requests}
    failed = by_event[(bad, "FAILED")].document["message"]
    assert (failed["provider_code"], failed["error_code"], failed["channel"]) == (
        failing_code,
        "INVALID_PHONE_NUMBER",
        "SMS",
    )
    undelivered = by_event[(late, "FAILED")].document["message"]
    assert (undelivered["provider_code"], undelivered["delivery_status"]) == ("30006", "UNDELIVERED")
    sent = by_event[(good, "SENT")]
    assert sent.document["message"]["provider_message_id"] == f"sid-{good}"
    assert sent.headers["outbound-event"] == "SENT"
    assert int(sent.headers["outbound-event-id"]) == sent.document["event_id"]
    assert sample(metrics, "outbound_callback_delivered_total", status="SENT") == 2
    delivered = await db.fetchval("SELECT count(*) FROM outbound_callback_outbox WHERE status = 'DELIVERED'")
    assert delivered == 6


async def test_organisations_without_a_callback_get_no_outbox_rows(db: asyncpg.Connection, db_dsn: str) -> None:
    async with serving(db_dsn, callbacks=FAST) as api, api.client() as client, receiving() as receiver:
        await register(api.url, client, receiver.url)
        await enqueue_sms(db, 3, org_id="no-callbacks")
        [mine] = await enqueue_sms(db, org_id=ORG)
        async with running_worker(db_dsn, ScriptedProvider()):
            await wait_for(db, ALL_SENT, 4)
        await record(db, [receipt(mine, DeliveryStatus.DELIVERED, 1)])
    rows = await db.fetch("SELECT org_id, outbound_message_id, event FROM outbound_callback_outbox ORDER BY id")
    assert [(r["org_id"], r["outbound_message_id"], r["event"]) for r in rows] == [
        (ORG, mine, "SENT"),
        (ORG, mine, "DELIVERED"),
    ]


async def test_a_receiver_down_for_a_while_loses_nothing(db: asyncpg.Connection, db_dsn: str) -> None:
    metrics = Metrics()
    count = 8
    async with receiving() as receiver, serving(db_dsn, callbacks=FAST) as api, api.client() as client:
        secret = await register(api.url, client, receiver.url)
        receiver.failing = True
        ids = await enqueue_sms(db, count, org_id=ORG)
        async with dispatching(db_dsn, FAST, metrics):
            async with running_worker(db_dsn, ScriptedProvider()):
                await wait_for(db, ALL_SENT, count)
            # Every event refused at least three times, then the receiver comes back.
            await receiver.wait_for(count)
            async with asyncio.timeout(60):
                while any(receiver.refusals(r.event_id) < 3 for r in receiver.requests):
                    await asyncio.sleep(0.02)
            receiver.failing = False
            await wait_for(
                db, "SELECT count(*) = $1 FROM outbound_callback_outbox WHERE status = 'DELIVERED'", count, timeout=60
            )
    accepted = [event for event, status in receiver.answers if status == 200]
    assert len(accepted) == len(set(accepted)) == count  # each event accepted once, then never sent again
    assert {r.document["message"]["message_id"] for r in receiver.requests} == set(ids)
    assert all(signed_by(r, secret) for r in receiver.requests)
    # Retries back off: per event, each gap at least the scheduled delay (base 100 ms doubling,
    # at most 20 % jitter off), measured at the receiver.
    first = receiver.requests[0].event_id
    times = [r.at for r in receiver.requests if r.event_id == first]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 3
    for n, gap in enumerate(gaps[:3], start=1):
        assert gap >= FAST.delay_seconds(n, 1.0) - 0.01, gaps
    assert sample(metrics, "outbound_callback_retried_total", reason="http") >= 3 * count
    assert sample(metrics, "outbound_callback_delivered_total", status="SENT") == count
    assert sample(metrics, "outbound_callback_failed_total", reason="http") == 0


async def test_a_slow_receiver_never_slows_the_send_path(db: asyncpg.Connection, db_dsn: str) -> None:
    metrics = Metrics()
    count = 30
    async with receiving() as receiver, serving(db_dsn, callbacks=FAST) as api, api.client() as client:
        await register(api.url, client, receiver.url)
        receiver.hold = asyncio.Event()  # every request waits until the test lets it answer
        async with dispatching(db_dsn, FAST, metrics), running_worker(db_dsn, ScriptedProvider(), batch_size=5):
            first = await enqueue_sms(db, 5, org_id=ORG)
            await wait_for(db, ALL_SENT, 5)
            await receiver.wait_for(1)
            # The receiver holds its answers; every later message still goes SENT.
            rest = await enqueue_sms(db, count - 5, org_id=ORG)
            await wait_for(db, ALL_SENT, count, timeout=60)
            assert receiver.answered == 0
            depth_seen = await _gauge_at_least(metrics, "outbound_callback_outbox_depth", 1)
            assert depth_seen
            receiver.hold.set()
            await receiver.wait_for(count)
            await wait_for(
                db, "SELECT count(*) = $1 FROM outbound_callback_outbox WHERE status = 'DELIVERED'", count, timeout=60
            )
    assert {r.document["message"]["message_id"] for r in receiver.requests} == set(first + rest)


async def _gauge_at_least(metrics: Metrics, name: str, value: float, timeout: float = 30.0) -> bool:
    async with asyncio.timeout(timeout):
        while sample(metrics, name) < value:
            await asyncio.sleep(0.02)
    return True


async def test_a_receiver_that_never_recovers_is_given_up_after_the_last_attempt(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    settings = FAST.model_copy(update={"max_attempts": 3})
    metrics = Metrics()
    async with receiving() as receiver, serving(db_dsn, callbacks=settings) as api, api.client() as client:
        await register(api.url, client, receiver.url)
        receiver.failing, receiver.failing_status = True, 500
        await enqueue_sms(db, org_id=ORG)
        async with dispatching(db_dsn, settings, metrics), running_worker(db_dsn, ScriptedProvider()):
            await wait_for(db, "SELECT count(*) = 1 FROM outbound_callback_outbox WHERE status = 'FAILED'", timeout=60)
    row = await db.fetchrow("SELECT attempts, last_http_status, last_error FROM outbound_callback_outbox")
    assert row is not None
    assert (row["attempts"], row["last_http_status"], row["last_error"]) == (3, 500, "HTTP 500")
    assert len(receiver.requests) == 3
    assert sample(metrics, "outbound_callback_failed_total", reason="http") == 1
    assert sample(metrics, "outbound_callback_retried_total", reason="http") == 2


async def test_rotation_signs_with_both_secrets_until_the_grace_period_ends(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    async with receiving() as receiver, serving(db_dsn, callbacks=FAST) as api, api.client() as client:
        old = await register(api.url, client, receiver.url)
        [endpoint] = (await client.get("/v1/callbacks")).json()["data"]
        assert "secret" not in endpoint
        rotated = await client.post(
            f"/v1/callbacks/{endpoint['id']}/rotate", json={"previous_secret_valid_seconds": 3600}
        )
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != old
        assert rotated.json()["previous_secret_until"] is not None
        async with dispatching(db_dsn, FAST), running_worker(db_dsn, ScriptedProvider()):
            await enqueue_sms(db, org_id=ORG)
            [during] = await receiver.wait_for(1)
            ended = await client.post(
                f"/v1/callbacks/{endpoint['id']}/rotate", json={"previous_secret_valid_seconds": 0}
            )
            newest = ended.json()["secret"]
            await enqueue_sms(db, org_id=ORG)
            after = (await receiver.wait_for(2))[1]
    assert signatures(during) == 2
    assert signed_by(during, old)
    assert signed_by(during, new)
    assert signatures(after) == 1
    assert signed_by(after, newest)
    assert not signed_by(after, new)
    assert not signed_by(after, old)


async def test_a_failed_lease_recovery_is_a_failed_callback(db: asyncpg.Connection, db_dsn: str) -> None:
    async with receiving() as receiver, serving(db_dsn, callbacks=FAST) as api, api.client() as client:
        secret = await register(api.url, client, receiver.url)
        [message_id] = await enqueue_sms(db, org_id=ORG, max_attempts=1)
        await db.execute(
            """UPDATE outbound_message SET status = 'SENDING', attempt_count = 1, claim_count = 1,
                      lease_id = gen_random_uuid(), leased_until = now() - interval '1 minute' WHERE id = $1""",
            message_id,
        )
        async with dispatching(db_dsn, FAST), running_worker(db_dsn, ScriptedProvider()):
            [request] = await receiver.wait_for(1)
    assert signed_by(request, secret)
    assert (request.document["event"], request.document["message"]["error_code"]) == ("FAILED", "LEASE_EXPIRED")


async def test_callback_api_checks_its_input(db_dsn: str) -> None:
    async with serving(db_dsn, callbacks=FAST) as api, api.client() as client, api.client(api.other_token) as other:
        bad = await client.post("/v1/callbacks", json={"url": "ftp://example.com/x"})
        assert bad.status_code == 422
        assert bad.json()["error"]["fields"][0]["field"] == "url"
        creds = await client.post("/v1/callbacks", json={"url": "http://user:pw@127.0.0.1/x"})
        assert creds.status_code == 422
        await register(api.url, client, "http://127.0.0.1:9/a")
        again = await client.post("/v1/callbacks", json={"url": "http://127.0.0.1:9/a"})
        assert again.status_code == 409
        [endpoint] = (await client.get("/v1/callbacks")).json()["data"]
        assert (await other.get("/v1/callbacks")).json()["data"] == []
        assert (await other.delete(f"/v1/callbacks/{endpoint['id']}")).status_code == 404
        assert (await other.post(f"/v1/callbacks/{endpoint['id']}/rotate")).status_code == 404
        assert (await client.delete(f"/v1/callbacks/{endpoint['id']}")).status_code == 204
        assert (await client.get("/v1/callbacks")).json()["data"] == []
        for n in range(10):
            await register(api.url, client, f"http://127.0.0.1:9/{n}")
        full = await client.post("/v1/callbacks", json={"url": "http://127.0.0.1:9/eleven"})
        assert full.status_code == 409


async def test_the_dispatcher_outlives_a_database_restart(tmp_path: Any) -> None:
    from tests.integration.faults.postmaster import postmaster

    metrics = Metrics()
    async with postmaster() as server, receiving() as receiver:
        conn = await connect(server.dsn)
        try:
            await conn.execute(
                "INSERT INTO outbound_callback_endpoint (org_id, url, secret) VALUES ($1, $2, 'whsec_test')",
                ORG,
                receiver.url,
            )
            await enqueue_sms(conn, org_id=ORG)
            # A short request timeout keeps the lease short: a delivery whose result the restart kept
            # from being recorded is sent again when its lease ends (at least once).
            settings = FAST.model_copy(update={"timeout_seconds": 3.0})
            async with dispatching(server.dsn, settings, metrics), running_worker(server.dsn, ScriptedProvider()):
                await receiver.wait_for(1)
                await conn.close()
                await server.restart(down=2.0)
                conn = await connect(server.dsn)
                await enqueue_sms(conn, org_id=ORG)
                await receiver.wait_for(2, timeout=90)
                # Still dispatching: under load the first result write can meet the restart.
                await wait_for(
                    conn, "SELECT count(*) = 2 FROM outbound_callback_outbox WHERE status = 'DELIVERED'", timeout=90
                )
        finally:
            await conn.close()


async def test_a_receiver_slower_than_the_timeout_is_retried(db: asyncpg.Connection, db_dsn: str) -> None:
    settings = FAST.model_copy(update={"timeout_seconds": 0.5})
    metrics = Metrics()
    async with receiving() as receiver, serving(db_dsn, callbacks=settings) as api, api.client() as client:
        await register(api.url, client, receiver.url)
        receiver.hold = asyncio.Event()
        await enqueue_sms(db, org_id=ORG)
        async with dispatching(db_dsn, settings, metrics), running_worker(db_dsn, ScriptedProvider()):
            await wait_for(db, "SELECT attempts >= 2 AND last_error LIKE '%Timeout%' FROM outbound_callback_outbox")
            assert (await db.fetchval("SELECT status FROM outbound_callback_outbox")) == "PENDING"
            assert sample(metrics, "outbound_callback_retried_total", reason="network") >= 1
            receiver.hold.set()
            await wait_for(db, "SELECT status = 'DELIVERED' FROM outbound_callback_outbox", timeout=60)
