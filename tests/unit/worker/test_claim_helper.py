"""The worker's two claim loops on the in-memory gateway: the helper claims on the LISTEN
connection only while the last claim came back full, both together never exceed max_in_flight, and
a helper whose connection fails backs off instead of spinning."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from outbound_sender.domain import OutboundMessage
from outbound_sender.worker.claimer import Claimer
from tests.fake_gateway import FakeGateway, FakeSubscription
from tests.unit.worker.test_units import running
from tests.unit.worker.units import Units, build, until
from tests.workers import PeakCounting

LISTEN = "claim on the LISTEN connection"


class SlowClaims(FakeGateway):
    """Claims take a round trip, so the two loops' claims overlap."""

    async def claim(self, *args: Any, **kwargs: Any) -> list[OutboundMessage]:
        await asyncio.sleep(0.003)
        return await super().claim(*args, **kwargs)


def helper(units: Units, subscription: FakeSubscription | None) -> Claimer:
    u = units
    return Claimer(
        u.gateway,
        u.sender,
        u.choice,
        signals=u.signals,
        settings=u.settings,
        metrics=u.metrics,
        on=lambda: subscription,
    )


def all_sent(fake: FakeGateway, count: int) -> bool:
    return fake.statuses() == {"SENT": count}


def listening() -> FakeSubscription:
    return FakeSubscription(lambda _channel: None, lambda: None, lambda: None)


async def test_two_claim_loops_together_never_hold_more_than_max_in_flight() -> None:
    fake = SlowClaims()
    fake.add(600)
    provider = PeakCounting(latency=0.004)
    units = build(fake, provider, max_in_flight=7, batch_size=3)
    stop = asyncio.Event()
    loops = (units.claimer.run(stop), helper(units, listening()).run(stop), units.completer.run())
    async with running(*loops):
        await until(lambda: fake.statuses() == {"SENT": 600})
    assert provider.peak <= 7
    assert set(provider.calls.values()) == {1}
    assert fake.calls[LISTEN] > 0.2 * fake.calls["claim"]  # the helper took its share


async def test_the_helper_claims_only_while_the_last_claim_was_full() -> None:
    fake = FakeGateway()
    units = build(fake, batch_size=10, poll_interval_ms=20)
    stop = asyncio.Event()
    async with running(units.claimer.run(stop), helper(units, listening()).run(stop), units.completer.run()):
        await until(lambda: fake.calls["claim"] >= 10)  # idle: the main loop polls
        fake.add(4)  # less than a batch: the main loop's claim comes back short
        await until(lambda: fake.statuses() == {"SENT": 4})
        assert fake.calls[LISTEN] == 0
        fake.add(500)
        await until(lambda: fake.statuses() == {"SENT": 504})
        assert fake.calls[LISTEN] > 0
        busy = fake.calls[LISTEN]
        await until(lambda: not units.signals.backlog.is_set())
        polls = fake.calls["claim"]
        await until(lambda: fake.calls["claim"] >= polls + 10)  # idle again
        assert fake.calls[LISTEN] <= busy + 1  # at most the one claim that found the backlog gone


async def test_a_helper_whose_connection_fails_backs_off_even_when_woken() -> None:
    fake = FakeGateway()
    fake.add(100)
    fake.failures["claim"] = [ConnectionResetError() for _ in range(100)]
    units = build(fake, batch_size=10, poll_interval_ms=1000)
    units.signals.backlog.set()
    units.signals.wake.set()  # NOTIFYs keep arriving; only the main loop clears this
    stop = asyncio.Event()
    async with running(helper(units, listening()).run(stop)):
        await asyncio.sleep(0.5)
    assert 2 <= fake.calls["claim"] <= 5  # 0.1 s doubling: 0.1 + 0.2 + ... ; a spinning loop makes 100


async def test_a_short_claim_of_one_loop_never_leaves_the_other_waiting_for_room() -> None:
    """max_in_flight = batch: while one loop's claim holds every free slot, the other waits for room.
    When that claim comes back short, the slots it held are free again and the waiting loop must
    see it (it once waited for a send to finish, and no send was running: the worker stopped)."""
    fake = SlowClaims()
    units = build(fake, max_in_flight=4, batch_size=4, poll_interval_ms=60_000)
    stop = asyncio.Event()
    async with running(units.claimer.run(stop), helper(units, listening()).run(stop), units.completer.run()):
        for round_ in range(1, 21):
            fake.add(4)  # a full claim, then a short one by either loop
            units.signals.wake.set()  # the NOTIFY of the insert
            await until(functools.partial(all_sent, fake, 4 * round_), timeout=5)
