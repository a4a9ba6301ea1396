"""Channel gates: what a message of one channel passes before and after its provider call.

The send loop (worker/sender.py) is the same for every channel; it asks the gate registered for
the message's channel, if any. WhatsApp's quota and rate limits are one such gate
(worker/whatsapp.py); SMS and e-mail have none.

    admit(message) ──▶ Admission(stopped=None, token)  send; `token` goes to after_failure
                   └─▶ Admission(stopped="HELD", result) not sent; `result` is recorded
                   └─▶ Admission(stopped="REROUTED")     not sent; the gate moved the message
    after_failure(message, token, error) ──▶ seconds to hold without burning an attempt, or None
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from outbound_sender.domain import CallResult, Channel, OutboundMessage
from outbound_sender.errors import ProviderError


@dataclass(frozen=True, slots=True)
class Admission:
    stopped: str | None = None  # why the message is not sent now (the span's outcome), None: send it
    result: CallResult | None = None  # what to record for a stopped message (None: nothing)
    token: object = None  # the gate's own state for after_failure


SEND = Admission()


class ChannelGate(Protocol):
    async def admit(self, message: OutboundMessage) -> Admission: ...

    async def after_failure(self, message: OutboundMessage, token: object, error: ProviderError) -> float | None: ...

    async def aclose(self) -> None: ...


Gates = Mapping[Channel, ChannelGate]


async def admit(gates: Gates, message: OutboundMessage) -> Admission:
    gate = gates.get(message.channel)
    return SEND if gate is None else await gate.admit(message)


async def after_failure(
    gates: Gates, message: OutboundMessage, admission: Admission, error: ProviderError
) -> float | None:
    gate = gates.get(message.channel)
    return None if gate is None else await gate.after_failure(message, admission.token, error)
