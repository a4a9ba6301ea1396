"""Each unit of the worker on the in-memory gateway: one job each, tested alone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from outbound_sender.domain import CallResult, Channel, ErrorCode, OutboundMessage, Outcome, ProviderControl
from outbound_sender.errors import ProviderError
from outbound_sender.providers.base import SendResult
from outbound_sender.worker import results
from outbound_sender.worker.gates import Admission
from outbound_sender.worker.listener import Listener
from outbound_sender.worker.loops import Signals
from tests.fake_gateway import FakeGateway
from tests.unit.worker.units import build, until
from tests.workers import PeakCounting


@asynccontextmanager
async def running(*loops: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def sent(message: OutboundMessage) -> CallResult:
    return results.success(message, "scripted", SendResult(f"pm-{message.id}", 201), 1)


async def test_the_claimer_claims_due_messages_of_its_channels_and_hands_them_to_the_sender() -> None:
    fake = FakeGateway()
    fake.add(3)
    fake.add(2, Channel.EMAIL)
    units = build(fake, channels=[Channel.SMS])
    assert await units.claimer.claim_once(10) == (3, 10)
    assert fake.statuses() == {"SENDING": 3, "QUEUED": 2}
    assert {row.lease_owner for row in fake.rows.values() if row.status == "SENDING"} == {units.settings.id}
    await until(lambda: units.completer.queue.qsize() == 3)
    assert sorted(units.provider.calls) == [1, 2, 3]


async def test_the_claimer_claims_no_more_than_the_sender_has_room_for() -> None:
    fake = FakeGateway()
    fake.add(5)
    units = build(fake)
    assert await units.claimer.claim_once(2) == (2, 2)
    assert fake.statuses() == {"SENDING": 2, "QUEUED": 3}


async def test_the_claimer_does_not_claim_while_results_cannot_be_recorded(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeGateway()
    fake.add(2)
    units = build(fake)
    units.signals.recording.clear()
    stop = asyncio.Event()
    async with running(units.claimer.run(stop)):
        await until(lambda: "not claiming: results cannot be recorded" in caplog.text)
        assert fake.calls["claim"] == 0
        units.signals.recording.set()
        await until(lambda: fake.calls["claim"] > 0)


async def test_the_completer_writes_what_accumulated_as_one_batch() -> None:
    fake = FakeGateway()
    fake.add(5)
    units = build(fake)
    for message in await fake.claim([Channel.SMS], 5, "w", 60):
        units.completer.record(sent(message))
    units.completer.finish()
    await units.completer.run()
    assert fake.batches == [5]
    assert units.completer.completed == 5
    assert fake.statuses() == {"SENT": 5}


async def test_the_completer_keeps_its_results_through_a_database_restart() -> None:
    fake = FakeGateway()
    fake.add(2)
    fake.failures["complete"] = [ConnectionResetError(), ConnectionRefusedError()]
    units = build(fake)
    for message in await fake.claim([Channel.SMS], 2, "w", 60):
        units.completer.record(sent(message))
    units.completer.finish()
    await units.completer.run()
    assert fake.calls["complete"] == 3
    assert fake.batches == [2]
    assert units.signals.recording.is_set()
    assert fake.statuses() == {"SENT": 2}


async def test_the_completer_stops_on_an_error_that_is_not_an_outage() -> None:
    fake = FakeGateway()
    fake.add(1)
    fake.failures["complete"] = [ValueError("a bug")]
    units = build(fake)
    [message] = await fake.claim([Channel.SMS], 1, "w", 60)
    units.completer.record(sent(message))
    with pytest.raises(ValueError, match="a bug"):
        await units.completer.run()


async def test_the_rescuer_frees_expired_leases_only() -> None:
    now = [0.0]
    fake = FakeGateway(clock=lambda: now[0])
    fake.add(3)
    fake.add(1, max_attempts=1)
    units = build(fake)
    await fake.claim([Channel.SMS], 4, "dead-worker", 10)
    fake.add(1)
    await fake.claim([Channel.SMS], 1, "live-worker", 100)
    now[0] = 11.0
    assert await units.rescuer.recover_once() == 4
    assert fake.statuses() == {"QUEUED": 3, "FAILED": 1, "SENDING": 1}
    assert units.metrics.recovered.labels("SMS", "QUEUED")._value.get() == 3
    assert units.metrics.recovered.labels("SMS", "FAILED")._value.get() == 1


async def test_the_sender_keeps_at_most_max_in_flight_calls() -> None:
    fake = FakeGateway()
    fake.add(20)
    provider = PeakCounting(latency=0.02)
    units = build(fake, provider, max_in_flight=4, batch_size=4)
    stop = asyncio.Event()
    async with running(units.claimer.run(stop), units.completer.run()):
        await until(lambda: fake.statuses() == {"SENT": 20})
    assert provider.peak == 4


async def test_the_follower_applies_control_changes() -> None:
    fake = FakeGateway()
    fake.control = [ProviderControl("scripted", Channel.SMS, "sandbox", enabled=False)]
    fake.policies = [{"org_id": "org1", "daily_limit": 7, "reset_period_seconds": 60, "messages_per_second": 1,
                      "pair_interval_seconds": 1, "urgent_templates": [], "defer_non_urgent_above_percent": None,
                      "fallback_channel": None}]  # fmt: skip
    units = build(fake, channels=[Channel.SMS])
    await units.follower.refresh()
    assert units.choice.active() == frozenset()
    assert units.policies.get("org1").daily_limit == 7
    assert units.signals.wake.is_set()
    stop = asyncio.Event()
    async with running(units.follower.run(stop)):
        fake.control = [ProviderControl("scripted", Channel.SMS, "sandbox", batch_size=3)]
        units.signals.control_changed.set()
        await until(lambda: units.choice.active() == {Channel.SMS})
    assert units.choice.claim_size(frozenset({Channel.SMS})) == 3


async def test_a_gate_is_chosen_by_channel_and_holds_only_its_messages() -> None:
    class Holding:
        def __init__(self) -> None:
            self.seen: list[int] = []

        async def admit(self, message: OutboundMessage) -> Admission:
            self.seen.append(message.id)
            return Admission("HELD", results.deferred(message, 60, ErrorCode.QUOTA_EXCEEDED, "held"))

        async def after_failure(self, message: OutboundMessage, token: object, error: ProviderError) -> float | None:
            return None

        async def aclose(self) -> None:
            return None

    fake = FakeGateway()
    [sms] = fake.add(1)
    [email] = fake.add(1, Channel.EMAIL)
    gate = Holding()
    units = build(fake, gates={Channel.EMAIL: gate})
    stop = asyncio.Event()
    async with running(units.claimer.run(stop), units.completer.run()):
        await until(lambda: len(fake.batches) > 0 and sum(fake.batches) == 2)
    assert gate.seen == [email]
    assert list(units.provider.calls) == [sms]
    assert fake.rows[sms].status == "SENT"
    held = fake.rows[email]
    assert (held.status, held.error_code, held.message.attempt_count) == ("QUEUED", "QUOTA_EXCEEDED", 0)
    assert held.attempts[-1].outcome is Outcome.DEFER


async def test_the_listener_wakes_the_claimer_for_its_channels_and_reconnects() -> None:
    fake = FakeGateway()
    signals = Signals()
    listener = Listener(fake, signals, lambda channel: channel == "SMS")
    assert await listener.open()
    [subscription] = fake.subscriptions
    subscription.on_ready("EMAIL")
    assert not signals.wake.is_set()
    subscription.on_ready("SMS")
    assert signals.wake.is_set()
    signals.wake.clear()
    fake.failures["subscribe"] = [ConnectionRefusedError()]
    stop = asyncio.Event()
    async with running(listener.run(stop)):
        subscription.terminate()
        subscription.on_lost()
        await until(lambda: len(fake.subscriptions) == 2)
        await until(lambda: signals.wake.is_set() and signals.control_changed.is_set())
    assert fake.calls["subscribe"] == 3  # the first, one refused, the one that worked
    assert fake.calls["warm"] == 1


async def test_a_late_loss_signal_of_an_old_listen_connection_leaves_its_successor_alone() -> None:
    fake = FakeGateway()
    signals = Signals()
    listener = Listener(fake, signals, lambda _channel: True)
    assert await listener.open()
    [first] = fake.subscriptions
    stop = asyncio.Event()
    async with running(listener.run(stop)):
        first.terminate()
        first.on_lost()
        await until(lambda: len(fake.subscriptions) == 2)
        first.on_lost()  # asyncpg calls termination listeners soon, not at once: this one came late
        await asyncio.sleep(0.3)
    assert len(fake.subscriptions) == 2
    assert not fake.subscriptions[1].closed


async def test_an_unreachable_database_leaves_the_listener_polling(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeGateway()
    fake.failures["subscribe"] = [ConnectionRefusedError()]
    with caplog.at_level(logging.WARNING):
        assert not await Listener(fake, Signals(), lambda _c: True).open()
    assert "LISTEN unavailable, polling only" in caplog.text
