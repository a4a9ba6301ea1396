"""The rescuer unit: messages whose lease expired (a worker died or hung) go back to the queue.

Every recovery interval, expired leases are recovered in batches: the message is QUEUED again
(or FAILED when its attempts are used up) and an ambiguous LEASE_EXPIRED attempt is recorded,
since the provider may have got it. It waits while this worker's own results cannot be written:
they still hold their leases, and recovering them would send them twice.
"""

from __future__ import annotations

import asyncio
import logging

from outbound_sender.metrics import Metrics
from outbound_sender.store.gateway import WorkerGateway
from outbound_sender.worker.loops import Signals, tolerating, wait_any

log = logging.getLogger("OutboundJobWorker")
RECOVERY_BATCH = 500


class Rescuer:
    def __init__(self, gateway: WorkerGateway, signals: Signals, metrics: Metrics, interval_seconds: float) -> None:
        self.gateway = gateway
        self.signals = signals
        self.metrics = metrics
        self.interval = interval_seconds

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.signals.recording.is_set():  # our own results first: they still hold their leases
                await tolerating("recovery", self.recover_once())
            await wait_any(self.interval, stop)

    async def recover_once(self) -> int:
        """Recover every expired lease now; how many."""
        total = 0
        while True:
            rows = await self.gateway.recover_expired(RECOVERY_BATCH)
            for row in rows:
                self.metrics.recovered.labels(row.channel, row.status).inc()
                fields = {"messageId": row.id, "leaseOwner": row.lease_owner, "status": row.status}
                log.warning("OutboundJobWorker recovered expired lease", extra={"fields": fields})
            total += len(rows)
            if len(rows) < RECOVERY_BATCH:
                return total
