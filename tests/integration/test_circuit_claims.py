"""A worker whose circuits are open leaves the channel to workers that can send: it does not claim
it, hands back what it had claimed, writes no attempt row for its own state, and counts that as a
deferral, not as a failed send."""

from __future__ import annotations

from itertools import count

import asyncpg

from outbound_sender.domain import ErrorCode, OutboundMessage
from outbound_sender.errors import TemporaryError
from outbound_sender.providers.base import SendResult
from outbound_sender.worker.circuit import BreakerConfig
from tests.workers import ScriptedProvider, enqueue_sms, running_worker, statuses, wait_for

SENT_ALL = "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'"
DEFER_ROWS = "SELECT count(*) FROM outbound_attempt WHERE outcome = 'DEFER'"


async def test_a_worker_with_an_open_circuit_leaves_the_messages_to_a_healthy_one(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    broken = ScriptedProvider(name="broken")
    healthy = ScriptedProvider(latency=0.01, name="healthy")
    async with (
        running_worker(db_dsn, broken, batch_size=10, poll_interval_ms=100) as stuck,
        running_worker(db_dsn, healthy, batch_size=10, poll_interval_ms=100),
    ):
        breaker = stuck.dispatcher.breakers["broken"]
        for _ in range(breaker.config.failure_threshold):  # five provider failures seen by this pod
            breaker.record(False, True)
        assert breaker.reopens_in() > 20
        await enqueue_sms(db, 200)
        await wait_for(db, SENT_ALL, 200, timeout=20)  # well before the open circuit's 30 s
    assert stuck.claimed_total == 0
    assert sum(broken.calls.values()) == 0
    assert sum(healthy.calls.values()) == 200
    assert await db.fetchval(DEFER_ROWS) == 0


def fails_first(n: int) -> ScriptedProvider:
    """A provider whose first `n` calls fail at once (503), opening a circuit of threshold `n`."""
    calls = count(1)

    def behaviour(message: OutboundMessage, _call: int) -> SendResult | Exception:
        if next(calls) <= n:
            return TemporaryError(ErrorCode.TEMPORARY_ERROR, "503 from the test")
        return SendResult(f"ok-{message.id}", 201)

    return ScriptedProvider(behaviour, name="flaky")


async def test_messages_caught_by_an_open_circuit_go_back_unsent_and_count_as_deferred(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    threshold, batch = 5, 20
    flaky = fails_first(threshold)
    await enqueue_sms(db, batch)
    async with running_worker(db_dsn, flaky, batch_size=batch, max_in_flight=batch) as worker:
        assert worker.dispatcher.breakers["flaky"].config == BreakerConfig()  # threshold 5, open 30 s
        await wait_for(db, "SELECT count(*) = $1 FROM outbound_attempt", threshold)
        await wait_for(db, "SELECT count(*) = $1 FROM outbound_message WHERE status = 'QUEUED'", batch)
        registry = worker.metrics.registry
        deferred = registry.get_sample_value(
            "outbound_message_deferred_total", {"channel": "SMS", "reason": "NO_PROVIDER"}
        )
        no_provider = registry.get_sample_value(
            "outbound_message_send_failure_total", {"channel": "SMS", "provider": "none", "error_code": "NO_PROVIDER"}
        )
        assert sum(flaky.calls.values()) == threshold
    assert deferred == batch - threshold
    assert not no_provider, "a deferral is not a failed send"  # the series exists from the start, at 0
    outcomes = await db.fetch("SELECT outcome, count(*) AS n FROM outbound_attempt GROUP BY outcome")
    assert {r["outcome"]: r["n"] for r in outcomes} == {"RETRY": threshold}
    healthy = ScriptedProvider(name="healthy")
    async with running_worker(db_dsn, healthy):
        await wait_for(db, SENT_ALL, batch, timeout=20)
    assert await statuses(db) == {"SENT": batch}
    assert await db.fetchval(DEFER_ROWS) == 0
