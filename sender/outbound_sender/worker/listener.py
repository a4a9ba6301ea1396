"""The wake-ups of the claim loop: one LISTEN connection (outbound_message_ready, outbound_control).

A NOTIFY for a channel this worker claims sets `wake`; a control NOTIFY sets `control_changed`.
When the connection dies (database restart, network) it is re-opened with backoff, and then the
claim loop is woken and control re-read, since work may have arrived meanwhile. Without the
connection the worker still polls (WorkerSettings.poll_interval_ms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from outbound_sender.store.db import is_transient
from outbound_sender.store.gateway import Subscription, WorkerGateway
from outbound_sender.worker.loops import Backoff, Signals, tolerating, wait_any

log = logging.getLogger("OutboundJobWorker")
LISTENER_CHECK_SECONDS = 5.0  # how often the connection is checked (besides its termination callback)


class Listener:
    def __init__(self, gateway: WorkerGateway, signals: Signals, wanted: Callable[[str], bool]) -> None:
        """`wanted(channel)`: whether a NOTIFY for that channel should wake the claim loop."""
        self.gateway = gateway
        self.signals = signals
        self.wanted = wanted
        self.subscription: Subscription | None = None
        self._lost = asyncio.Event()

    def _ready(self, channel: str) -> None:
        if self.wanted(channel):
            self.signals.wake.set()

    async def open(self) -> bool:
        """Subscribe; False (polling only, retried by `run`) when the database is unreachable."""
        # Each connection signals its own loss: the termination callback of a connection already
        # given up can run after its successor opened, and must not condemn the successor (which,
        # terminated in turn, would condemn the next one: a reconnect loop).
        self._lost = lost = asyncio.Event()
        try:
            self.subscription = await self.gateway.subscribe(self._ready, self.signals.control_changed.set, lost.set)
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("LISTEN unavailable, polling only", extra={"fields": {"error": repr(error)}})
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            subscription = self.subscription
            if subscription is None:
                if await self.open():
                    backoff.reset()
                    await self._reconnected()
                else:
                    await wait_any(backoff.next(), stop)
                continue
            await wait_any(LISTENER_CHECK_SECONDS, self._lost, stop)
            if stop.is_set():
                return
            if not self._lost.is_set() and await subscription.alive():
                continue
            log.warning("OutboundJobWorker LISTEN connection lost; reconnecting")
            self.subscription = None
            subscription.terminate()

    async def _reconnected(self) -> None:
        log.info("OutboundJobWorker LISTEN re-established")
        await tolerating("pool reconnect", self.gateway.warm())
        self.signals.wake.set()
        self.signals.control_changed.set()

    async def close(self) -> None:
        if self.subscription is not None:
            await self.subscription.close()
