"""The worker's settings, read from the environment as `outbound worker` reads them, change what the
worker does: app.build_worker builds the real OutboundJobWorker from load_settings(), and it runs on
the in-memory gateway (tests/fake_gateway.py) instead of PostgreSQL.

A period is shown from both sides: a short one lets the worker notice a change within the deadline,
a long one (a minute) keeps it from noticing within a window many times the short period.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from outbound_sender.app import build_worker
from outbound_sender.config import load_settings
from outbound_sender.domain import Channel, ErrorCode, OutboundMessage, ProviderControl
from outbound_sender.errors import TemporaryError
from outbound_sender.providers.base import SendResult
from outbound_sender.providers.null import NullProvider
from outbound_sender.worker.service import OutboundJobWorker
from tests.fake_gateway import FakeGateway
from tests.unit.worker.units import until

SHORT_MS, LONG_MS = "100", "60000"
QUIET_SECONDS = 1.5  # fifteen short periods: a long period shows nothing in this window


class RecordingGateway(FakeGateway):
    """The fake gateway, with what the worker's run needs of a real one and the claim sizes asked."""

    pool: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[int] = []

    async def claim(
        self, channels: Collection[Channel], limit: int, *args: Any, **kwargs: Any
    ) -> list[OutboundMessage]:
        self.limits.append(limit)
        return await super().claim(channels, limit, *args, **kwargs)

    async def close(self) -> None:
        return None


@asynccontextmanager
async def worker_from_environment(
    monkeypatch: pytest.MonkeyPatch, fake: RecordingGateway, **env: str
) -> AsyncIterator[OutboundJobWorker]:
    """`outbound worker` with the null provider and `env`, on `fake`; stopped and drained on exit."""
    quick = {"OUTBOUND_WORKER_POLL_INTERVAL_MS": SHORT_MS, "OUTBOUND_WORKER_CONTROL_INTERVAL_MS": SHORT_MS}
    for name, value in ({"OUTBOUND_PROVIDER_KIND": "null"} | quick | env).items():
        monkeypatch.setenv(name, value)
    worker = build_worker("postgresql://unused.invalid/none", load_settings())

    async def open_gateway(dsn: str) -> RecordingGateway:
        return fake

    monkeypatch.setattr(worker, "gateway_type", SimpleNamespace(open=open_gateway))
    monkeypatch.setattr(worker, "_gates", lambda gateway: {})  # WhatsApp's quota gate needs PostgreSQL
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: fake.calls["subscribe"] > 0 or task.done())
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def channel_of(fake: FakeGateway, status: str) -> set[Channel]:
    return {row.message.channel for row in fake.rows.values() if row.status.value == status}


@pytest.mark.parametrize(
    ("switch", "channel"),
    [
        ("SMS_PROVIDER_ENABLED", Channel.SMS),
        ("EMAIL_PROVIDER_ENABLED", Channel.EMAIL),
        ("WHATSAPP_PROVIDER_ENABLED", Channel.WHATSAPP),
    ],
)
async def test_each_channel_switch_from_the_environment_keeps_its_channel_queued(
    monkeypatch: pytest.MonkeyPatch, switch: str, channel: Channel
) -> None:
    fake = RecordingGateway()
    for each in Channel:
        fake.add(3, each)
    async with worker_from_environment(monkeypatch, fake, **{switch: "false"}):
        await until(lambda: len([r for r in fake.rows.values() if r.status.value == "SENT"]) == 6)
    assert channel_of(fake, "QUEUED") == {channel}
    assert channel_of(fake, "SENT") == set(Channel) - {channel}


@pytest.mark.parametrize("size", [3, 7])
async def test_the_batch_size_from_the_environment_is_what_each_claim_asks_for(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    fake = RecordingGateway()
    fake.add(20)
    async with worker_from_environment(monkeypatch, fake, OUTBOUND_WORKER_BATCH_SIZE=str(size)):
        await until(lambda: fake.statuses() == {"SENT": 20})
    assert fake.limits[0] == size
    assert max(fake.limits) == size


@pytest.mark.parametrize("period_ms", [SHORT_MS, LONG_MS])
async def test_messages_that_arrive_without_a_notify_are_claimed_at_the_poll_interval(
    monkeypatch: pytest.MonkeyPatch, period_ms: str
) -> None:
    fake = RecordingGateway()
    # The control refresh wakes the claimer too: it is kept out of the way here.
    env = {"OUTBOUND_WORKER_POLL_INTERVAL_MS": period_ms, "OUTBOUND_WORKER_CONTROL_INTERVAL_MS": LONG_MS}
    async with worker_from_environment(monkeypatch, fake, **env):
        await until(lambda: fake.calls["claim"] > 0)  # the first claim found nothing: now it waits
        fake.add(2)  # no NOTIFY: only the poll finds them
        if period_ms == SHORT_MS:
            await until(lambda: fake.statuses() == {"SENT": 2})
        else:
            await asyncio.sleep(QUIET_SECONDS)
            assert fake.statuses() == {"QUEUED": 2}


@pytest.mark.parametrize("period_ms", [SHORT_MS, LONG_MS])
async def test_expired_leases_are_recovered_at_the_recovery_interval(
    monkeypatch: pytest.MonkeyPatch, period_ms: str
) -> None:
    fake = RecordingGateway()
    async with worker_from_environment(monkeypatch, fake, OUTBOUND_WORKER_RECOVERY_INTERVAL_MS=period_ms):
        await until(lambda: fake.calls["recover_expired"] > 0)  # the first pass ran on an empty queue
        [dead] = fake.add(1)
        await fake.claim([Channel.SMS], 1, "a-worker-that-died", 0.0)  # its lease has already expired
        if period_ms == SHORT_MS:
            await until(lambda: fake.rows[dead].status.value == "SENT")
        else:
            await asyncio.sleep(QUIET_SECONDS)
            assert fake.rows[dead].status.value == "SENDING"


@pytest.mark.parametrize("period_ms", [SHORT_MS, LONG_MS])
async def test_control_rows_changed_without_a_notify_are_read_at_the_control_interval(
    monkeypatch: pytest.MonkeyPatch, period_ms: str
) -> None:
    fake = RecordingGateway()
    fake.control = [ProviderControl("null", Channel.SMS, "null", enabled=False)]
    fake.add(2)
    async with worker_from_environment(monkeypatch, fake, OUTBOUND_WORKER_CONTROL_INTERVAL_MS=period_ms):
        await until(lambda: fake.calls["control_rows"] > 0 and fake.calls["claim"] + fake.calls["subscribe"] > 0)
        await asyncio.sleep(0.3)  # the provider is disabled: nothing is claimed
        assert fake.statuses() == {"QUEUED": 2}
        fake.control = [ProviderControl("null", Channel.SMS, "null", enabled=True)]  # no NOTIFY
        if period_ms == SHORT_MS:
            await until(lambda: fake.statuses() == {"SENT": 2})
        else:
            await asyncio.sleep(QUIET_SECONDS)
            assert fake.statuses() == {"QUEUED": 2}


@pytest.mark.parametrize(
    ("attempts_before", "hint", "low_ms", "high_ms"),
    [
        (0, None, 2500, 5000),  # the first retry: between half and all of OUTBOUND_RETRY_BASE_MS
        (6, None, 4500, 9000),  # 5 s * 2^6 is capped at OUTBOUND_RETRY_MAX_MS
        (0, 3600.0, 20_000, 20_000),  # a provider's Retry-After is capped at OUTBOUND_RETRY_MAX_HINT_SECONDS
    ],
)
async def test_the_retry_delay_follows_the_retry_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, attempts_before: int, hint: float | None, low_ms: int, high_ms: int
) -> None:
    fake = RecordingGateway()
    [message_id] = fake.add(1, max_attempts=10)
    row = fake.rows[message_id]
    row.message = replace(row.message, attempt_count=attempts_before, attempt_no=attempts_before)
    env = {"OUTBOUND_RETRY_BASE_MS": "5000", "OUTBOUND_RETRY_MAX_MS": "9000", "OUTBOUND_RETRY_MAX_HINT_SECONDS": "20"}

    async def failing(_provider: NullProvider, _message: OutboundMessage) -> SendResult:
        raise TemporaryError(ErrorCode.TEMPORARY_ERROR, "try later", retry_after=hint)

    monkeypatch.setattr(NullProvider, "send", failing)
    async with worker_from_environment(monkeypatch, fake, **env):
        await until(lambda: len(row.attempts) >= 1)
    attempt = row.attempts[0]
    assert attempt.retry_delay_ms is not None
    assert low_ms <= attempt.retry_delay_ms <= high_ms


class FailingCalls:
    """The null provider answering every call with a provider-side failure; counts the calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0

        async def send(_provider: NullProvider, _message: OutboundMessage) -> SendResult:
            self.calls += 1
            raise TemporaryError(ErrorCode.TEMPORARY_ERROR, "the provider is down")

        monkeypatch.setattr(NullProvider, "send", send)


def failing_queue(monkeypatch: pytest.MonkeyPatch, messages: int) -> tuple[FailingCalls, RecordingGateway]:
    fake = RecordingGateway()
    fake.add(messages)
    return FailingCalls(monkeypatch), fake


# One message at a time, and a failed message does not come back during the test.
ONE_BY_ONE = {
    "OUTBOUND_WORKER_BATCH_SIZE": "1",
    "OUTBOUND_WORKER_MAX_IN_FLIGHT": "1",
    "OUTBOUND_RETRY_BASE_MS": "60000",
    "OUTBOUND_RETRY_MAX_MS": "60000",
}


@pytest.mark.parametrize("threshold", [2, 4])
async def test_the_circuit_opens_after_the_failure_threshold_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    provider, fake = failing_queue(monkeypatch, 10)
    env = ONE_BY_ONE | {"OUTBOUND_CIRCUIT_FAILURE_THRESHOLD": str(threshold), "OUTBOUND_CIRCUIT_OPEN_SECONDS": "60"}
    async with worker_from_environment(monkeypatch, fake, **env):
        await until(lambda: provider.calls >= threshold)
        await asyncio.sleep(QUIET_SECONDS)  # open: the worker leaves the rest of the channel alone
    assert provider.calls == threshold
    assert fake.statuses() == {"QUEUED": 10}


@pytest.mark.parametrize("open_seconds", ["0.2", "60"])
async def test_the_circuit_probes_again_after_its_open_seconds_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, open_seconds: str
) -> None:
    provider, fake = failing_queue(monkeypatch, 10)
    env = ONE_BY_ONE | {"OUTBOUND_CIRCUIT_FAILURE_THRESHOLD": "1", "OUTBOUND_CIRCUIT_OPEN_SECONDS": open_seconds}
    async with worker_from_environment(monkeypatch, fake, **env):
        await until(lambda: provider.calls >= 1)
        if open_seconds == "60":
            await asyncio.sleep(QUIET_SECONDS)
            assert provider.calls == 1
        else:
            await until(lambda: provider.calls >= 3)  # a probe, which fails and opens it again, then another


@pytest.mark.parametrize("probes", [2, 5])
async def test_a_half_open_circuit_claims_as_many_as_its_probes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, probes: int
) -> None:
    provider, fake = failing_queue(monkeypatch, 100)
    env = {
        "OUTBOUND_RETRY_BASE_MS": "60000",
        "OUTBOUND_CIRCUIT_FAILURE_THRESHOLD": "1",
        "OUTBOUND_CIRCUIT_OPEN_SECONDS": "0.2",
        "OUTBOUND_CIRCUIT_HALF_OPEN_PROBES": str(probes),
    }
    async with worker_from_environment(monkeypatch, fake, **env):
        await until(lambda: provider.calls >= 12)  # several rounds of failing probes
        recent = len(fake.limits)
        await until(lambda: len(fake.limits) >= recent + 10)
    assert fake.limits[0] == 10  # closed: a whole batch
    assert max(fake.limits[recent:]) == probes  # half-open: no more than the probes at a time


class SlowCalls:
    """The null provider taking `seconds` per call; records the most calls at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
        self.now = self.peak = 0
        original = NullProvider.send

        async def send(provider: NullProvider, message: OutboundMessage) -> SendResult:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await asyncio.sleep(seconds)
                return await original(provider, message)
            finally:
                self.now -= 1

        monkeypatch.setattr(NullProvider, "send", send)


@pytest.mark.parametrize("limit", [3, 7])
async def test_no_more_calls_at_once_than_max_in_flight_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    calls = SlowCalls(monkeypatch, 0.05)
    fake = RecordingGateway()
    fake.add(40)
    async with worker_from_environment(monkeypatch, fake, OUTBOUND_WORKER_MAX_IN_FLIGHT=str(limit)):
        await until(lambda: fake.statuses() == {"SENT": 40})
    assert calls.peak == limit


async def test_the_channels_id_and_lease_from_the_environment_are_what_the_claims_carry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    SlowCalls(monkeypatch, 60)  # the claimed messages stay SENDING while the test looks at them
    fake = RecordingGateway()
    fake.add(2, Channel.SMS)
    fake.add(2, Channel.EMAIL)
    env = {"OUTBOUND_WORKER_CHANNELS": "sms", "OUTBOUND_WORKER_ID": "pod-7", "OUTBOUND_WORKER_LEASE_SECONDS": "321"}
    async with worker_from_environment(monkeypatch, fake, OUTBOUND_WORKER_SHUTDOWN_GRACE_SECONDS="0", **env):
        await until(lambda: fake.statuses().get("SENDING") == 2)
        claimed = [row for row in fake.rows.values() if row.status.value == "SENDING"]
        leases = [row.leased_until - fake.clock() for row in claimed]
        queued = channel_of(fake, "QUEUED")
    assert {row.message.channel for row in claimed} == {Channel.SMS}
    assert queued == {Channel.EMAIL}
    assert {row.lease_owner for row in claimed} == {"pod-7"}
    assert all(300 < lease <= 321 for lease in leases)


@pytest.mark.parametrize(("grace", "after_stop"), [("30", "SENT"), ("0", "QUEUED")])
async def test_a_stop_waits_for_in_flight_sends_as_long_as_the_grace_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, grace: str, after_stop: str
) -> None:
    SlowCalls(monkeypatch, 0.5)
    fake = RecordingGateway()
    [message_id] = fake.add(1)
    async with worker_from_environment(monkeypatch, fake, OUTBOUND_WORKER_SHUTDOWN_GRACE_SECONDS=grace):
        await until(lambda: fake.rows[message_id].status.value == "SENDING")
    # stopped: the send finished within the grace, or was cut short and handed back unsent
    assert fake.rows[message_id].status.value == after_stop
