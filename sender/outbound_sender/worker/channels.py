"""Which channels the worker claims now, and how many messages (pure decisions, no I/O)."""

from __future__ import annotations

import time

from outbound_sender.domain import Channel
from outbound_sender.worker.control import RuntimeControl
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.settings import ChannelSwitches, WorkerSettings


class ChannelChoice:
    def __init__(
        self, settings: WorkerSettings, switches: ChannelSwitches, control: RuntimeControl, dispatcher: Dispatcher
    ) -> None:
        self.settings = settings
        self.switches = switches
        self.control = control
        self.dispatcher = dispatcher

    def active(self) -> frozenset[Channel]:
        """The channels to claim now: configured, switched on, allowed by runtime control, and not
        ones whose every provider has its circuit open in this worker."""
        wanted = frozenset(self.settings.channels) & self.switches.enabled()
        return frozenset(c for c in self.control.allowed_channels(wanted) if self.dispatcher.claimable(c) != 0)

    def wants(self, channel: str) -> bool:
        """Whether a NOTIFY naming `channel` concerns this worker."""
        return channel in {c.value for c in self.active()}

    def claim_size(self, channels: frozenset[Channel]) -> int:
        """The batch: the control row's for controlled channels (an operator-run worker serves one
        channel), else OUTBOUND_WORKER_BATCH_SIZE; no more than the probes of a half-open circuit."""
        controlled = [c for c in channels if self.control.controlled(c)]
        if not controlled:
            size = self.settings.batch_size if channels else 0
        else:
            now = time.monotonic()
            size = max(self.control.claim_size(c, self.settings.batch_size, now) for c in controlled)
        limits = [limit for c in channels if (limit := self.dispatcher.claimable(c)) is not None]
        return min([size, *limits])
