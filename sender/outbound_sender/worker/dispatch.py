"""Which provider sends a message: failover by priority, guarded by a per-provider circuit breaker.

    provider_for(message) ─▶ providers of the channel, by priority (lower first)
                             └─ first whose circuit admits the call ─▶ GuardedProvider
                                (its send() reports the outcome back to the circuit)
                             none admits ─▶ CircuitOpenError (the worker hands the message back
                                            unsent, no attempt; see claimable(): it does not claim
                                            a channel whose every circuit it holds open)

Circuit (per provider, per pod; the operator keeps the fleet-wide one, same CLOSED / OPEN /
HALF_OPEN vocabulary):

    CLOSED ──`failure_threshold` consecutive provider-side failures──▶ OPEN
    OPEN ──`open_seconds` later──▶ HALF_OPEN: up to `half_open_probes` calls go through
    HALF_OPEN ──probe succeeds──▶ CLOSED        HALF_OPEN ──probe fails──▶ OPEN (cool-down again)

A provider-side failure is what says the provider (or our account) is unwell: 5xx, timeouts and
ambiguous sends, connection failures, AUTH_FAILED / ACCOUNT_SUSPENDED / QUOTA_EXCEEDED. Answers
about one message or recipient (an invalid number, a template, an unsubscribe, a bounce, a
per-user limit such as WhatsApp 131049, even when retried: `ProviderError.about_recipient`) and
throttles prove the provider is up: they count as successes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from outbound_sender.domain import Channel, CircuitState, ErrorCode, OutboundMessage
from outbound_sender.errors import PermanentError, ProviderError, RateLimitedError, TemporaryError
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import Provider, SendResult
from outbound_sender.worker.control import ProviderControl

log = logging.getLogger("OutboundJobWorker.circuit")
ACCOUNT_CODES = frozenset({ErrorCode.AUTH_FAILED, ErrorCode.ACCOUNT_SUSPENDED, ErrorCode.QUOTA_EXCEEDED})
Clock = Callable[[], float]
SETTLED_BY_RECEIPT = "settled-by-receipt"


class NoProviderError(TemporaryError):
    """No enabled provider for the channel: the message waits (retry), nothing is lost."""


class CircuitOpenError(NoProviderError):
    """Every provider of the channel has its circuit open: the message is deferred (no attempt burnt)."""


def is_provider_failure(error: BaseException) -> bool:
    if isinstance(error, RateLimitedError):
        return False
    if isinstance(error, ProviderError) and error.about_recipient:
        return False  # WhatsApp 131049 and the like: the provider answered about one recipient
    if isinstance(error, TemporaryError):
        return True
    return isinstance(error, PermanentError) and error.code in ACCOUNT_CODES


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    open_seconds: float = 30.0
    half_open_probes: int = 1


class CircuitBreaker:
    """One provider's circuit. Not thread-safe: one event loop per process."""

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self.reopens_in() <= 0:
            self._set(CircuitState.HALF_OPEN)
        return self._state

    def reopens_in(self) -> float:
        """Seconds until an OPEN circuit lets probes through (0 when not OPEN)."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.config.open_seconds - self._clock())

    def admits(self) -> int | None:
        """How many calls would be let through now: None for any number (CLOSED), the probes left
        when HALF_OPEN, 0 when OPEN."""
        state = self.state
        if state is CircuitState.CLOSED:
            return None
        if state is CircuitState.HALF_OPEN:
            return max(0, self.config.half_open_probes - self._probes)
        return 0

    def acquire(self) -> bool | None:
        """None: refused. False: an ordinary call. True: a half-open probe."""
        state = self.state
        if state is CircuitState.CLOSED:
            return False
        if state is CircuitState.HALF_OPEN and self._probes < self.config.half_open_probes:
            self._probes += 1
            return True
        return None

    def release(self, probe: bool) -> None:
        if probe:
            self._probes = max(0, self._probes - 1)

    def record(self, probe: bool, failed: bool) -> None:
        self.release(probe)
        if not failed:
            self._failures = 0
            if self._state is CircuitState.HALF_OPEN:
                self._set(CircuitState.CLOSED)
            return
        self._failures += 1
        half_open = self._state is CircuitState.HALF_OPEN
        if half_open or (self._state is CircuitState.CLOSED and self._failures >= self.config.failure_threshold):
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probes = 0
        self._set(CircuitState.OPEN)

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)


class Receipts(Protocol):
    """Whether a message already has a positive delivery receipt (webhooks.store.ReceiptCheck)."""

    async def __call__(self, message_id: int) -> str | None: ...

    def bind(self, pool: asyncpg.Pool) -> None: ...

    async def aclose(self) -> None: ...


class GuardedProvider:
    """A provider chosen for one send: reports the outcome to its circuit, and does not re-send a
    retried message that a delivery receipt shows was already accepted."""

    def __init__(
        self, provider: Provider, breaker: CircuitBreaker, probe: bool, receipts: Receipts | None = None
    ) -> None:
        self.inner = provider
        self._breaker = breaker
        self._probe = probe
        self._receipts = receipts
        self.name = provider.name
        self.channels = provider.channels

    async def send(self, message: OutboundMessage) -> SendResult:
        if self._receipts is not None and message.attempt_no > 1:
            receipt = await self._receipts(message.id)
            if receipt is not None:
                self._breaker.release(self._probe)
                return SendResult(receipt or None, None, SETTLED_BY_RECEIPT)
        try:
            result = await self.inner.send(message)
        except ProviderError as error:
            self._breaker.record(self._probe, is_provider_failure(error))
            raise
        except asyncio.CancelledError:  # worker shutdown: says nothing about the provider
            self._breaker.release(self._probe)
            raise
        except Exception:
            self._breaker.record(self._probe, True)
            raise
        self._breaker.record(self._probe, False)
        return result

    async def aclose(self) -> None:
        """The dispatcher owns the provider's connections."""


class Dispatcher:
    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        priorities: Mapping[str, int] | None = None,
        breaker: BreakerConfig | None = None,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
        receipts: Receipts | None = None,
    ) -> None:
        """`priorities` by provider name, lower first; unnamed providers keep their list order.
        `receipts`: checked before a retry is sent (see GuardedProvider)."""
        self._receipts = receipts
        ranks = priorities or {}
        ordered = sorted(enumerate(providers), key=lambda item: (ranks.get(item[1].name, 0), item[0]))
        self._providers = [provider for _, provider in ordered]
        self._metrics = metrics
        self.breakers = {p.name: self._breaker(p, breaker, clock) for p in self._providers}
        self._by_channel: dict[Channel, list[Provider]] = {}
        for provider in self._providers:
            for channel in sorted(provider.channels):
                self._by_channel.setdefault(channel, []).append(provider)
        self.fleet: dict[str, ProviderControl] = {}  # the operator's provider_control rows, by name

    def apply_control(self, rows: Mapping[str, ProviderControl]) -> None:
        """The fleet-wide state (operator): skip disabled or OPEN providers, order by its priority,
        and let ForceClosed override this pod's own breaker."""
        self.fleet = dict(rows)

    def _breaker(self, provider: Provider, config: BreakerConfig | None, clock: Clock) -> CircuitBreaker:
        def changed(state: CircuitState) -> None:
            level = logging.WARNING if state is CircuitState.OPEN else logging.INFO
            fields = {"provider": provider.name, "circuit": state.value}
            log.log(level, f"circuit {state.value} for provider {provider.name}", extra={"fields": fields})
            self._gauge(provider, state)

        self._gauge(provider, CircuitState.CLOSED)
        return CircuitBreaker(config, clock=clock, on_change=changed)

    def _gauge(self, provider: Provider, state: CircuitState) -> None:
        if self._metrics is not None:
            for channel in provider.channels:
                self._metrics.circuit_state.labels(provider.name, channel.value).set(state.gauge_value)

    def _candidates(self, channel: Channel) -> list[Provider]:
        configured = self._by_channel.get(channel, [])
        if not self.fleet:
            return configured
        usable = [p for p in configured if p.name not in self.fleet or self.fleet[p.name].usable]
        return sorted(usable, key=lambda p: self.fleet[p.name].priority if p.name in self.fleet else 0)

    def _acquire(self, provider: Provider) -> bool | None:
        row = self.fleet.get(provider.name)
        if row is not None and row.circuit_mode == "ForceClosed":
            return False  # forced closed fleet-wide: this pod's breaker does not stop it
        return self.breakers[provider.name].acquire()

    def claimable(self, channel: Channel) -> int | None:
        """How many messages of `channel` this pod could send now: None for no limit, 0 when it
        holds the circuit of every provider of the channel open (leave them to other workers), the
        half-open probes left otherwise. A channel without usable providers is decided elsewhere
        (runtime control), so it is not limited here."""
        candidates = self._candidates(channel)
        if not candidates:
            return None
        total = 0
        for provider in candidates:
            row = self.fleet.get(provider.name)
            if row is not None and row.circuit_mode == "ForceClosed":
                return None
            admits = self.breakers[provider.name].admits()
            if admits is None:
                return None
            total += admits
        return total

    def provider_for(self, message: OutboundMessage) -> Provider:
        candidates = self._candidates(message.channel)
        if not candidates:
            if message.channel in self._by_channel:
                raise CircuitOpenError(
                    ErrorCode.NO_PROVIDER, f"no usable {message.channel} provider (fleet control)", retry_after=5.0
                )
            raise NoProviderError(ErrorCode.NO_PROVIDER, f"no provider configured for {message.channel}")
        for provider in candidates:
            probe = self._acquire(provider)
            if probe is not None:
                self._count_failover(message.channel, candidates[0], provider)
                return GuardedProvider(provider, self.breakers[provider.name], probe, self._receipts)
        wait = min(self.breakers[p.name].reopens_in() for p in candidates)
        raise CircuitOpenError(
            ErrorCode.NO_PROVIDER,
            f"every {message.channel} provider has its circuit open",
            retry_after=max(wait, 1.0),
        )

    def _count_failover(self, channel: Channel, first: Provider, chosen: Provider) -> None:
        if chosen is not first and self._metrics is not None:
            self._metrics.failover.labels(channel.value, first.name, chosen.name).inc()

    @property
    def provider_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self._providers)

    @property
    def channels(self) -> frozenset[Channel]:
        """The channels some provider of this dispatcher sends."""
        return frozenset(channel for p in self._providers for channel in p.channels)

    def states(self) -> dict[str, CircuitState]:
        return {name: breaker.state for name, breaker in self.breakers.items()}

    async def send(self, message: OutboundMessage) -> tuple[str, SendResult]:
        provider = self.provider_for(message)
        return provider.name, await provider.send(message)

    def bind_pool(self, pool: asyncpg.Pool) -> None:
        """The worker's pool, for the receipt check (no connections of the dispatcher's own)."""
        if self._receipts is not None:
            self._receipts.bind(pool)

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()
        if self._receipts is not None:
            await self._receipts.aclose()
