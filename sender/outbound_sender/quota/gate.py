"""The WhatsApp gate: everything a WhatsApp message passes before (and after) its provider call.

admit(message)
  policy of the organisation ──▶ reserve one unit of the daily quota (PostgreSQL), under the
                                 ceiling the template earns (urgent: 100 %; others: threshold)
      refused, non-urgent, above the threshold, fallback channel set ──▶ Rerouted (to SMS)
      refused otherwise ──▶ Held until the reset / the throttle ends (no attempt burnt)
  per-second limits (Redis GCRA: the number's throughput, the recipient pair rate)
      a wait under a second ──▶ sleep, then send; longer ──▶ Held (reservation given back)
  ──▶ Admitted

after_failure(message, admitted, error)
  WhatsApp 4 / 17 / 80007 (app, user, WABA limits) ──▶ the organisation is throttled until then
  130429 (number throughput), 131056 (pair rate) ──▶ the message is held, no attempt burnt
  a definite failure gives the reservation back; an ambiguous one keeps it
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import AmbiguousSendError, ProviderError
from outbound_sender.quota.policy import PolicyBook, QuotaPolicy
from outbound_sender.quota.ratelimit import Limits, WhatsAppRateLimiter
from outbound_sender.store.quota import QuotaLedger, Refusal, Reservation

log = logging.getLogger("outbound.quota")
ORG_THROTTLES = frozenset({"4", "17", "80007"})
MESSAGE_THROTTLES = frozenset({"130429", "131056"})
INLINE_WAIT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Admitted:
    reservation: Reservation


@dataclass(frozen=True, slots=True)
class Held:
    seconds: float
    code: ErrorCode
    note: str


@dataclass(frozen=True, slots=True)
class Rerouted:
    channel: Channel
    note: str


Decision = Admitted | Held | Rerouted


def on_refusal(policy: QuotaPolicy, message: OutboundMessage, refusal: Refusal) -> Held | Rerouted:
    """Pure: what a refused reservation means for this message."""
    fallback = policy.fallback_channel
    if refusal.reason == "threshold" and fallback is Channel.SMS and message.body:
        note = f"re-routed WHATSAPP->SMS: quota {refusal.used}/{refusal.limit} above the deferral threshold"
        return Rerouted(Channel.SMS, note)
    code = ErrorCode.RATE_LIMIT_EXCEEDED if refusal.reason == "throttled" else ErrorCode.QUOTA_EXCEEDED
    return Held(refusal.wait_seconds, code, refusal.describe())


class WhatsAppGate:
    def __init__(self, ledger: QuotaLedger, limiter: WhatsAppRateLimiter, policies: PolicyBook, number: str) -> None:
        self.ledger = ledger
        self.limiter = limiter
        self.policies = policies
        self.number = number  # the business phone number id (throughput is per number)

    async def admit(self, message: OutboundMessage) -> Decision:
        policy = self.policies.get(message.org_id)
        granted = await self.ledger.reserve(policy, policy.ceiling_percent(message.template_code))
        if isinstance(granted, Refusal):
            return on_refusal(policy, message, granted)
        held = await self._pace(policy, message)
        if held is not None:
            await self.ledger.release(granted)
            return held
        return Admitted(granted)

    async def _pace(self, policy: QuotaPolicy, message: OutboundMessage) -> Held | None:
        limits = Limits(policy.messages_per_second, policy.pair_interval_seconds)
        while True:
            verdict = await self.limiter.check(self.number, message.to_recipient, limits)
            if verdict.allowed:
                return None
            if verdict.wait_seconds > INLINE_WAIT_SECONDS:
                note = f"WhatsApp {verdict.reason} limit: next slot in {verdict.wait_seconds:.1f} s"
                return Held(verdict.wait_seconds, ErrorCode.RATE_LIMIT_EXCEEDED, note)
            await asyncio.sleep(verdict.wait_seconds)

    async def after_failure(
        self, message: OutboundMessage, decision: Decision | None, error: ProviderError
    ) -> float | None:
        """Seconds to hold the message without burning an attempt (throttles), else None."""
        if isinstance(decision, Admitted) and not isinstance(error, AmbiguousSendError):
            await self.ledger.release(decision.reservation)
        code, wait = error.provider_code, max(error.retry_after or 0.0, 1.0)
        if code in ORG_THROTTLES:
            await self.ledger.throttle(message.org_id, wait)
            log.warning("WhatsApp throttled the organisation", extra={"fields": {"org": message.org_id, "code": code}})
            return wait
        return wait if code in MESSAGE_THROTTLES else None
