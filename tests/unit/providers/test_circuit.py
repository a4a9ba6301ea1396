"""The per-provider circuit breaker and failover by priority (pure: injected clock, fake providers)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_sender.domain import Channel, CircuitState, ErrorCode, OutboundMessage
from outbound_sender.errors import AmbiguousSendError, PermanentError, RateLimitedError, TemporaryError
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import SendResult
from outbound_sender.worker.circuit import BreakerConfig, CircuitBreaker, is_provider_failure
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.guarded import CircuitOpenError, NoProviderError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProvider:
    name: str
    channels: frozenset[Channel] = frozenset({Channel.SMS})
    errors: list[BaseException] = field(default_factory=list)
    sent: int = 0

    async def send(self, message: OutboundMessage) -> SendResult:
        self.sent += 1
        if self.errors:
            raise self.errors.pop(0)
        return SendResult(f"{self.name}-{self.sent}")

    async def aclose(self) -> None:
        return None


def message(channel: Channel = Channel.SMS) -> OutboundMessage:
    return OutboundMessage(1, "org", channel, "+15551234567", "lease", 1, 1, 5, body="hi")


def temporary() -> TemporaryError:
    return TemporaryError(ErrorCode.TEMPORARY_ERROR, "503")


def test_opens_after_threshold_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=3), clock=Clock())
    for _ in range(2):
        breaker.record(False, True)
    breaker.record(False, False)  # a success resets the count
    for _ in range(2):
        breaker.record(False, True)
    assert breaker.state is CircuitState.CLOSED
    breaker.record(False, True)
    assert breaker.state.value == "OPEN"
    assert breaker.acquire() is None


def test_half_open_after_cool_down_admits_limited_probes_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, open_seconds=30, half_open_probes=1), clock=clock)
    breaker.record(False, True)
    clock.now += 29.9
    assert breaker.state is CircuitState.OPEN
    clock.now += 0.2
    assert breaker.state.value == "HALF_OPEN"
    assert breaker.acquire() is True
    assert breaker.acquire() is None  # one probe at a time
    breaker.record(True, False)
    assert breaker.state.value == "CLOSED"
    assert breaker.acquire() is False


def test_failed_probe_reopens_for_a_full_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=1, open_seconds=30), clock=clock)
    breaker.record(False, True)
    clock.now += 31
    assert breaker.acquire() is True
    breaker.record(True, True)
    assert breaker.state is CircuitState.OPEN
    assert breaker.reopens_in() == pytest.approx(30)


@given(st.lists(st.booleans(), max_size=200), st.integers(min_value=1, max_value=10))
def test_open_exactly_when_the_last_threshold_outcomes_failed(outcomes: list[bool], threshold: int) -> None:
    """Without time passing, the circuit is OPEN iff some run of `threshold` failures happened."""
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=threshold), clock=Clock())
    run, opened = 0, False
    for failed in outcomes:
        if breaker.acquire() is None:
            break
        breaker.record(False, failed)
        run = run + 1 if failed else 0
        opened = opened or run >= threshold
    assert (breaker.state is CircuitState.OPEN) is opened


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (TemporaryError(ErrorCode.TEMPORARY_ERROR, "5xx"), True),
        (AmbiguousSendError(ErrorCode.TEMPORARY_ERROR, "timeout"), True),
        (PermanentError(ErrorCode.AUTH_FAILED, "401"), True),
        (PermanentError(ErrorCode.ACCOUNT_SUSPENDED, "x"), True),
        (PermanentError(ErrorCode.QUOTA_EXCEEDED, "x"), True),
        (RateLimitedError(ErrorCode.RATE_LIMIT_EXCEEDED, "429"), False),
        (PermanentError(ErrorCode.INVALID_PHONE_NUMBER, "21211"), False),
        (PermanentError(ErrorCode.TEMPLATE_NOT_APPROVED, "132001"), False),
    ],
)
def test_what_counts_as_a_provider_failure(error: Exception, counts: bool) -> None:
    assert is_provider_failure(error) is counts


async def test_failover_to_the_next_priority_while_open_and_back_after_recovery() -> None:
    clock, metrics = Clock(), Metrics()
    primary = FakeProvider("primary", errors=[temporary(), temporary()])
    backup = FakeProvider("backup")
    dispatcher = Dispatcher(
        [backup, primary],
        priorities={"primary": 1, "backup": 2},
        breaker=BreakerConfig(failure_threshold=2, open_seconds=10),
        metrics=metrics,
        clock=clock,
    )
    for _ in range(2):
        with pytest.raises(TemporaryError):
            await dispatcher.send(message())
    gauge = metrics.registry.get_sample_value
    assert gauge("outbound_provider_circuit_state", {"provider": "primary", "channel": "SMS"}) == 2
    name, _ = await dispatcher.send(message())
    assert name == "backup"
    labels = {"channel": "SMS", "from_provider": "primary", "to_provider": "backup"}
    assert gauge("outbound_provider_failover_total", labels) == 1
    clock.now += 11
    name, _ = await dispatcher.send(message())  # the half-open probe goes to the primary
    assert name == "primary"
    assert dispatcher.states()["primary"] is CircuitState.CLOSED
    assert gauge("outbound_provider_circuit_state", {"provider": "primary", "channel": "SMS"}) == 0


async def test_all_open_raises_circuit_open_with_the_wait_as_hint() -> None:
    clock = Clock()
    only = FakeProvider("only", errors=[temporary()])
    dispatcher = Dispatcher([only], breaker=BreakerConfig(failure_threshold=1, open_seconds=20), clock=clock)
    with pytest.raises(TemporaryError):
        await dispatcher.send(message())
    clock.now += 5
    with pytest.raises(CircuitOpenError) as raised:
        dispatcher.provider_for(message())
    assert raised.value.retry_after == pytest.approx(15)
    assert only.sent == 1


def test_no_provider_for_a_channel() -> None:
    dispatcher = Dispatcher([FakeProvider("sms")])
    with pytest.raises(NoProviderError) as raised:
        dispatcher.provider_for(message(Channel.EMAIL))
    assert not isinstance(raised.value, CircuitOpenError)
    assert raised.value.code is ErrorCode.NO_PROVIDER


async def test_per_message_errors_never_open_the_circuit() -> None:
    bad_numbers: list[BaseException] = [PermanentError(ErrorCode.INVALID_PHONE_NUMBER, "21211") for _ in range(10)]
    provider = FakeProvider("p", errors=bad_numbers)
    dispatcher = Dispatcher([provider], breaker=BreakerConfig(failure_threshold=2))
    for _ in range(10):
        with pytest.raises(PermanentError):
            await dispatcher.send(message())
    assert dispatcher.states()["p"] is CircuitState.CLOSED
