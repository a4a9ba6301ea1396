"""Which provider sends a message. One provider per channel for now; failover arrives with the
provider issue (circuit breakers, backup providers by priority)."""

from __future__ import annotations

from collections.abc import Sequence

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import TemporaryError
from outbound_sender.providers.base import Provider, SendResult


class NoProviderError(TemporaryError):
    """No enabled provider for the channel: the message waits (retry), nothing is lost."""


class Dispatcher:
    def __init__(self, providers: Sequence[Provider]) -> None:
        self._by_channel: dict[Channel, list[Provider]] = {}
        for provider in providers:
            for channel in provider.channels:
                self._by_channel.setdefault(channel, []).append(provider)

    def provider_for(self, message: OutboundMessage) -> Provider:
        candidates = self._by_channel.get(message.channel)
        if not candidates:
            raise NoProviderError(ErrorCode.NO_PROVIDER, f"no provider configured for {message.channel}")
        return candidates[0]

    async def send(self, message: OutboundMessage) -> tuple[str, SendResult]:
        provider = self.provider_for(message)
        return provider.name, await provider.send(message)

    async def aclose(self) -> None:
        seen: set[int] = set()
        for providers in self._by_channel.values():
            for provider in providers:
                if id(provider) not in seen:
                    seen.add(id(provider))
                    await provider.aclose()
