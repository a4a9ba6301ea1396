"""The completer unit: results are written in batches, fenced by the lease they were claimed under.

Whatever accumulated while the previous write ran is the next batch (up to COMPLETE_BATCH_MAX), so
the database sees few statements at high throughput and no delay at low throughput. A write that
meets a transient database error is retried with the same results (the lease fences duplicates);
meanwhile `signals.recording` is clear and the claimer does not claim.
"""

from __future__ import annotations

import asyncio
import logging

from outbound_sender.domain import CallResult
from outbound_sender.metrics import Metrics
from outbound_sender.store.db import is_transient
from outbound_sender.store.gateway import Completion, WorkerGateway
from outbound_sender.worker import observe
from outbound_sender.worker.loops import Backoff, Signals

log = logging.getLogger("OutboundJobWorker")
COMPLETE_BATCH_MAX = 500


class Completer:
    def __init__(self, gateway: WorkerGateway, signals: Signals, metrics: Metrics, worker_id: str) -> None:
        self.gateway = gateway
        self.signals = signals
        self.metrics = metrics
        self.worker_id = worker_id
        self.queue: asyncio.Queue[CallResult | None] = asyncio.Queue()
        self.completed = 0  # results written (or handed back)

    def record(self, result: CallResult) -> None:
        self.queue.put_nowait(result)

    def finish(self) -> None:
        """Write what is queued, then end `run`."""
        self.queue.put_nowait(None)

    async def run(self) -> None:
        while True:
            batch, more = await self._next_batch()
            if batch:
                await self.flush(batch)
            if not more:
                return

    async def _next_batch(self) -> tuple[list[CallResult], bool]:
        """The queued results (waiting for the first); False once `finish` was called."""
        first = await self.queue.get()
        if first is None:
            return [], False
        batch = [first]
        while not self.queue.empty() and len(batch) < COMPLETE_BATCH_MAX:
            item = self.queue.get_nowait()
            if item is None:
                return batch, False
            batch.append(item)
        return batch, True

    async def flush(self, batch: list[CallResult]) -> None:
        released = [r for r in batch if r.release]
        recorded = [r for r in batch if not r.release]
        handed_back = len(released)
        backoff = Backoff()
        while True:
            try:
                rows = await self._write(recorded, released)
                break
            except Exception as error:
                if not is_transient(error):
                    raise
                self.signals.recording.clear()
                log.error("OutboundJobWorker cannot record results", extra={"fields": {"error": repr(error)}})
                await asyncio.sleep(backoff.next())
        self.signals.recording.set()
        self.completed += len(rows) + handed_back
        for row in rows:
            due = observe.observe_completion(self.metrics, row)
            if due is not None:
                self.signals.next_retry = min(self.signals.next_retry, due)

    async def _write(self, recorded: list[CallResult], released: list[CallResult]) -> list[Completion]:
        if released:
            await self.gateway.release(released)
            released.clear()  # handed back: a retry after a later failure must not release again
        if not recorded:
            return []
        return await self.gateway.complete(recorded, self.worker_id)
