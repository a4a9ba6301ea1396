"""The claimer unit: claim due messages (FOR UPDATE SKIP LOCKED, leased) and hand them to the sender.

It claims when the sender has room for a batch and results can be written (`signals.recording`;
a claimed message whose result cannot be recorded would be sent again once its lease expires).
After a short claim it sleeps until the poll interval, a wake-up (NOTIFY, control change) or the
earliest retry this worker scheduled, whichever comes first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from outbound_sender.metrics import Metrics
from outbound_sender.store.db import is_transient
from outbound_sender.store.gateway import Subscription, WorkerGateway
from outbound_sender.worker.channels import ChannelChoice
from outbound_sender.worker.loops import Backoff, Signals, first, wait_any
from outbound_sender.worker.sender import Sender
from outbound_sender.worker.settings import WorkerSettings

log = logging.getLogger("OutboundJobWorker")


class Claimer:
    def __init__(
        self,
        gateway: WorkerGateway,
        sender: Sender,
        choice: ChannelChoice,
        *,
        signals: Signals,
        settings: WorkerSettings,
        metrics: Metrics,
        on: Callable[[], Subscription | None] | None = None,
    ) -> None:
        """`on`: the helper loop, claiming on the connection it returns (the pool when None)."""
        self.gateway = gateway
        self.on = on
        self.sender = sender
        self.choice = choice
        self.signals = signals
        self.settings = settings
        self.metrics = metrics

    async def run(self, stop: asyncio.Event) -> None:
        poll = self.settings.poll_interval_ms / 1000
        backoff = Backoff()
        need = min(self.settings.batch_size, self.settings.max_in_flight)
        while not stop.is_set():
            if self.on is not None:
                await first(self.signals.backlog.wait(), stop.wait())
            await self.sender.wait_capacity(need, stop)
            await self._wait_recording(stop)
            if stop.is_set():
                return
            if self.on is not None and not self.signals.backlog.is_set():
                continue  # the backlog ended while this loop waited for room
            try:
                got, wanted = await self.claim_once(self.sender.free())
            except Exception as error:
                if not is_transient(error):
                    raise
                log.error("OutboundJobWorker claim failed", extra={"fields": {"error": repr(error)}})
                # The helper does not end its backoff on a wake-up: it never clears `wake`.
                wakes = (self.signals.wake,) if self.on is None else ()
                await wait_any(min(poll, backoff.next()), *wakes, stop)
                continue
            backoff.reset()
            if (got < wanted or wanted == 0) and self.on is None:
                await wait_any(self._until_next_retry(poll), self.signals.wake, stop)

    async def _wait_recording(self, stop: asyncio.Event) -> None:
        if not self.signals.recording.is_set():
            log.warning("OutboundJobWorker not claiming: results cannot be recorded")
            await first(self.signals.recording.wait(), stop.wait())

    def _until_next_retry(self, poll: float) -> float:
        """Sleep no longer than the poll interval, and wake when a retry we scheduled is due."""
        now = time.monotonic()
        if self.signals.next_retry <= now:
            self.signals.next_retry = float("inf")
        return max(0.0, min(poll, self.signals.next_retry - now))

    async def claim_once(self, free: int) -> tuple[int, int]:
        """Claim up to a batch (the control row's batch size when controlled); (claimed, wanted)."""
        channels = self.choice.active()
        want = min(free, self.choice.claim_size(channels))
        if not channels or want <= 0:
            self.signals.backlog.clear()
            return 0, 0
        if self.on is None:
            self.signals.wake.clear()  # the helper leaves wake-ups to the main loop
        s, on = self.settings, None if self.on is None else self.on()
        with self.sender.reserve(want):
            messages = await self.gateway.claim(channels, want, s.id, s.lease_seconds, on=on)
        self.metrics.heartbeat.set_to_current_time()
        if len(messages) < want:
            self.signals.backlog.clear()
        else:
            self.signals.backlog.set()
            self.signals.wake.set()  # more is due: the main loop claims again at once
        if messages:
            log.info(f"OutboundJobWorker Processing {len(messages)} pending outbound messages")
            for message in messages:
                self.sender.start(message)
        return len(messages), want
