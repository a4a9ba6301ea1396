"""The WhatsApp channel gate: the quota and rate limits of quota/gate.py, as the worker applies them.

Held ──▶ the message is recorded as DEFER (no attempt burnt) until the reset or the next slot;
Rerouted ──▶ the message is moved to the fallback channel (QUEUED, due now) through the gateway;
a failure's throttle codes hold the message; quota bookkeeping errors are logged, not fatal.
"""

from __future__ import annotations

import logging

import asyncpg

from outbound_sender.domain import OutboundMessage
from outbound_sender.errors import ProviderError
from outbound_sender.logs import message_fields
from outbound_sender.metrics import Metrics
from outbound_sender.quota.gate import Admitted, Held, WhatsAppGate
from outbound_sender.quota.policy import PolicyBook
from outbound_sender.quota.ratelimit import WhatsAppRateLimiter
from outbound_sender.store.gateway import PgWorkerGateway, WorkerGateway
from outbound_sender.store.quota import QuotaLedger
from outbound_sender.worker import results
from outbound_sender.worker.gates import Admission

log = logging.getLogger("OutboundJobWorker")
BOOKKEEPING_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class WhatsAppQuotaGate:
    def __init__(self, gate: WhatsAppGate, gateway: WorkerGateway, metrics: Metrics, worker_id: str) -> None:
        self.gate = gate
        self.gateway = gateway
        self.metrics = metrics
        self.worker_id = worker_id

    @classmethod
    def build(
        cls,
        gateway: PgWorkerGateway,
        metrics: Metrics,
        policies: PolicyBook,
        *,
        number: str,
        redis: str | None,
        worker: str,
        processes: int = 1,
    ) -> WhatsAppQuotaGate:
        """The gate of a worker: its ledger on the gateway's pool, Redis for the per-second limits
        (in process without Redis, a share of them for each of the pod's `processes`)."""
        client = None
        if redis:
            import redis.asyncio as aioredis

            client = aioredis.from_url(redis, socket_connect_timeout=0.5, socket_timeout=0.5)
        limiter = WhatsAppRateLimiter(client, gauge=metrics.ratelimit_fallback, processes=processes)
        return cls(WhatsAppGate(QuotaLedger(gateway.pool), limiter, policies, number), gateway, metrics, worker)

    async def admit(self, message: OutboundMessage) -> Admission:
        decision = await self.gate.admit(message)
        if isinstance(decision, Admitted):
            return Admission(token=decision)
        fields = message_fields(message.id, message.correlation_id, decision=decision.note)
        log.info("OutboundJobWorker WhatsApp quota decision", extra={"fields": fields})
        channel = message.channel.value
        if isinstance(decision, Held):
            self.metrics.deferred.labels(channel, decision.code.value).inc()
            return Admission("HELD", results.deferred(message, decision.seconds, decision.code, decision.note))
        await self.gateway.reroute(message, decision.channel, decision.note, self.worker_id)
        self.metrics.rerouted.labels(channel, decision.channel.value).inc()
        return Admission("REROUTED")

    async def after_failure(self, message: OutboundMessage, token: object, error: ProviderError) -> float | None:
        decision = token if isinstance(token, Admitted) else None
        try:
            return await self.gate.after_failure(message, decision, error)
        except BOOKKEEPING_ERRORS as db_error:
            log.error("OutboundJobWorker quota bookkeeping failed", extra={"fields": {"error": repr(db_error)}})
            return None

    async def aclose(self) -> None:
        if self.gate.limiter.client is not None:
            await self.gate.limiter.client.aclose()
