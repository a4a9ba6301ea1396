"""The control follower unit: the operator's provider_control rows and quota policies, applied here.

They are re-read every control interval, and at once when the listener hears NOTIFY
outbound_control. Each refresh updates runtime control (which channels to claim, batch sizes,
probes), the dispatcher's fleet view (disabled or OPEN providers skipped, ForceClosed), and the
WhatsApp quota policies; then the claimer is woken, since a channel may just have opened.
"""

from __future__ import annotations

import asyncio

from outbound_sender.quota.policy import PolicyBook, QuotaPolicy
from outbound_sender.store.gateway import WorkerGateway
from outbound_sender.worker.control import RuntimeControl
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.loops import Signals, tolerating, wait_any


class ControlFollower:
    def __init__(
        self,
        gateway: WorkerGateway,
        signals: Signals,
        *,
        control: RuntimeControl,
        dispatcher: Dispatcher,
        policies: PolicyBook,
        interval_seconds: float,
    ) -> None:
        self.gateway = gateway
        self.signals = signals
        self.control = control
        self.dispatcher = dispatcher
        self.policies = policies
        self.interval = interval_seconds

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await wait_any(self.interval, self.signals.control_changed, stop)
            self.signals.control_changed.clear()
            await tolerating("control refresh", self.refresh())

    async def refresh(self) -> None:
        rows = await self.gateway.control_rows()
        self.control.update(rows)
        self.dispatcher.apply_control({row.provider: row for row in rows})
        policies = await self.gateway.quota_policies()
        self.policies.update(QuotaPolicy.from_row(row) for row in policies)
        self.signals.wake.set()  # a channel may have just opened
