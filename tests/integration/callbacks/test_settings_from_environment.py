"""The callback dispatcher's retry schedule, read from the environment as `outbound callbacks` reads
it: after a failed POST the outbox row waits OUTBOUND_CALLBACKS_RETRY_BASE_MS doubled per attempt,
capped at OUTBOUND_CALLBACKS_RETRY_MAX_MS (up to a fifth less: jitter)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from outbound_sender.config import load_settings
from outbound_sender.metrics import Metrics
from tests.integration.api.conftest import ORG, serving
from tests.integration.callbacks.receiver import dispatching, receiving
from tests.integration.callbacks.test_callbacks import register
from tests.workers import ScriptedProvider, enqueue_sms, running_worker, wait_for

WAIT = "SELECT EXTRACT(EPOCH FROM next_attempt_at - now())::float8 FROM outbound_callback_outbox"
FAILED_TIMES = "SELECT count(*) = 1 FROM outbound_callback_outbox WHERE attempts = $1 AND last_http_status = 500"


async def test_the_retry_delay_follows_the_retry_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, db: asyncpg.Connection, db_dsn: str
) -> None:
    env = {
        "OUTBOUND_CALLBACKS_ALLOW_PRIVATE": "true",
        "OUTBOUND_CALLBACKS_POLL_INTERVAL_MS": "50",
        "OUTBOUND_CALLBACKS_RETRY_BASE_MS": "7000",
        "OUTBOUND_CALLBACKS_RETRY_MAX_MS": "20000",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings().callbacks
    async with receiving() as receiver, serving(db_dsn, callbacks=settings) as api, api.client() as client:
        await register(api.url, client, receiver.url)
        receiver.failing, receiver.failing_status = True, 500
        await enqueue_sms(db, org_id=ORG)
        async with dispatching(db_dsn, settings), running_worker(db_dsn, ScriptedProvider()):
            await wait_for(db, FAILED_TIMES, 1, timeout=60)
            first = await db.fetchval(WAIT)
            # Fast-forward to the 5th attempt: 7 s * 2^4 = 112 s, capped at 20 s.
            await db.execute("UPDATE outbound_callback_outbox SET attempts = 4, next_attempt_at = now()")
            await wait_for(db, FAILED_TIMES, 5, timeout=60)
            capped = await db.fetchval(WAIT)
    assert 7 * 0.8 - 1 <= first <= 7
    assert 20 * 0.8 - 1 <= capped <= 20


@pytest.mark.parametrize("period_ms", ["100", "60000"])
async def test_an_idle_dispatcher_looks_for_work_at_the_poll_interval_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, db: asyncpg.Connection, db_dsn: str, period_ms: str
) -> None:
    for name, value in {
        "OUTBOUND_CALLBACKS_ALLOW_PRIVATE": "true",
        "OUTBOUND_CALLBACKS_POLL_INTERVAL_MS": period_ms,
    }.items():
        monkeypatch.setenv(name, value)
    settings, metrics = load_settings().callbacks, Metrics()
    metrics.callback_outbox_depth.set(-1)  # set again by the dispatcher after its first look
    async with receiving() as receiver, serving(db_dsn, callbacks=settings) as api, api.client() as client:
        await register(api.url, client, receiver.url)
        async with dispatching(db_dsn, settings, metrics):
            async with asyncio.timeout(30):
                while metrics.callback_outbox_depth._value.get() < 0:
                    await asyncio.sleep(0.02)
            await enqueue_sms(db, org_id=ORG)  # idle now: the callbacks of its sending wait for the next look
            async with running_worker(db_dsn, ScriptedProvider()):
                await wait_for(db, "SELECT count(*) > 0 FROM outbound_callback_outbox", timeout=30)
            if period_ms == "100":
                async with asyncio.timeout(15):
                    while not receiver.requests:
                        await asyncio.sleep(0.02)
            else:
                await asyncio.sleep(1.5)  # fifteen short intervals
                assert receiver.requests == []
