"""One provider's circuit breaker in this pod (the operator keeps the fleet-wide one, in the same
CLOSED / OPEN / HALF_OPEN vocabulary: domain.CircuitState):

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

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from outbound_sender.domain import Channel, CircuitState, ErrorCode
from outbound_sender.errors import PermanentError, ProviderError, RateLimitedError, TemporaryError
from outbound_sender.metrics import Metrics

log = logging.getLogger("OutboundJobWorker.circuit")
ACCOUNT_CODES = frozenset({ErrorCode.AUTH_FAILED, ErrorCode.ACCOUNT_SUSPENDED, ErrorCode.QUOTA_EXCEEDED})
Clock = Callable[[], float]


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


def watched(
    provider: str, channels: Iterable[Channel], config: BreakerConfig | None, clock: Clock, metrics: Metrics | None
) -> CircuitBreaker:
    """A provider's breaker whose changes are logged and shown on outbound_provider_circuit_state."""

    served = frozenset(channels)

    def gauge(state: CircuitState) -> None:
        if metrics is not None:
            for channel in served:
                metrics.circuit_state.labels(provider, channel.value).set(state.gauge_value)

    def changed(state: CircuitState) -> None:
        level = logging.WARNING if state is CircuitState.OPEN else logging.INFO
        fields = {"provider": provider, "circuit": state.value}
        log.log(level, f"circuit {state.value} for provider {provider}", extra={"fields": fields})
        gauge(state)

    gauge(CircuitState.CLOSED)
    return CircuitBreaker(config, clock=clock, on_change=changed)
