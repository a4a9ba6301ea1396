"""An in-process provider that accepts everything at once: the pipeline benchmark's provider."""

from __future__ import annotations

import itertools

from outbound_sender.domain import Channel, OutboundMessage
from outbound_sender.providers.base import SendResult


class NullProvider:
    name = "null"
    channels = frozenset(Channel)

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(provider_message_id=f"null-{next(self._ids)}")

    async def aclose(self) -> None:
        return None
