"""The provider interface the worker sends through.

A provider turns one claimed message into one API call. It returns a SendResult when the provider
accepted the message and raises a ProviderError (errors.py) otherwise; the exception type carries
the retry intent. Providers take their httpx.AsyncClient from outside, so tests can inject
httpx.MockTransport or point them at a sandbox server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from outbound_sender.domain import Channel, OutboundMessage


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str | None
    http_status: int | None = None
    raw_status: str | None = None


@runtime_checkable
class Provider(Protocol):
    @property
    def name(self) -> str:
        """Stable provider name, used in metrics labels and outbound_attempt.provider."""
        ...

    @property
    def channels(self) -> frozenset[Channel]:
        """The channels this provider can send."""
        ...

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; raise ProviderError subclasses on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
