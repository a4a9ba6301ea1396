"""Which provider sends a message: failover by priority, guarded by a per-provider circuit breaker
(worker/circuit.py) and by the fleet-wide control rows of the operator.

    provider_for(message) ─▶ providers of the channel, by priority (lower first)
                             └─ first whose circuit admits the call ─▶ GuardedProvider
                                (its send() reports the outcome back to the circuit)
                             none admits ─▶ CircuitOpenError (the worker hands the message back
                                            unsent, no attempt; see claimable(): it does not claim
                                            a channel whose every circuit it holds open)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import asyncpg

from outbound_sender.domain import Channel, CircuitMode, CircuitState, ErrorCode, OutboundMessage, ProviderControl
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import Provider, SendResult
from outbound_sender.worker.circuit import BreakerConfig, Clock, watched
from outbound_sender.worker.guarded import CircuitOpenError, GuardedProvider, NoProviderError, Receipts


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
        self.breakers = {p.name: watched(p.name, p.channels, breaker, clock, metrics) for p in self._providers}
        self._by_channel: dict[Channel, list[Provider]] = {}
        for provider in self._providers:
            for channel in sorted(provider.channels):
                self._by_channel.setdefault(channel, []).append(provider)
        self.fleet: dict[str, ProviderControl] = {}  # the operator's provider_control rows, by name

    def apply_control(self, rows: Mapping[str, ProviderControl]) -> None:
        """The fleet-wide state (operator): skip disabled or OPEN providers, order by its priority,
        and let ForceClosed override this pod's own breaker."""
        self.fleet = dict(rows)

    def _candidates(self, channel: Channel) -> list[Provider]:
        configured = self._by_channel.get(channel, [])
        if not self.fleet:
            return configured
        usable = [p for p in configured if p.name not in self.fleet or self.fleet[p.name].usable]
        return sorted(usable, key=lambda p: self.fleet[p.name].priority if p.name in self.fleet else 0)

    def _acquire(self, provider: Provider) -> bool | None:
        row = self.fleet.get(provider.name)
        if row is not None and row.circuit_mode is CircuitMode.FORCE_CLOSED:
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
            if row is not None and row.circuit_mode is CircuitMode.FORCE_CLOSED:
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
