"""A provider chosen for one send, guarded: the outcome goes to its circuit, and a retried message
that a delivery receipt shows was already accepted is not sent again."""

from __future__ import annotations

import asyncio
from typing import Protocol

import asyncpg

from outbound_sender.domain import OutboundMessage
from outbound_sender.errors import ProviderError, TemporaryError
from outbound_sender.providers.base import Provider, SendResult
from outbound_sender.worker.circuit import CircuitBreaker, is_provider_failure

SETTLED_BY_RECEIPT = "settled-by-receipt"


class NoProviderError(TemporaryError):
    """No enabled provider for the channel: the message waits (retry), nothing is lost."""


class CircuitOpenError(NoProviderError):
    """Every provider of the channel has its circuit open: the message is deferred (no attempt burnt)."""


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
