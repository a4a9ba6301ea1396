"""Runtime control as the worker sees it: the provider_control rows (domain.ProviderControl), and
what they mean here.

Rules (the operator computes circuit states; this only applies them):
- a channel with no rows is not controlled: it is sent as the process is configured;
- a provider is usable when it is enabled and its circuit is not OPEN;
- in a channel, the usable provider with the lowest priority sends; the others stand by, so a
  backup Deployment idles until the primary is disabled or its circuit opens (failover);
- a HALF_OPEN provider sends at most `half_open_probes_per_minute` messages a minute per worker;
- the batch size of a controlled worker is its provider's row's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from outbound_sender.domain import Channel, CircuitState, ProviderControl


@dataclass
class ProbeBudget:
    """Half-open probes: at most `per_minute` claims a minute (a token bucket refilled over a minute)."""

    per_minute: int
    tokens: float = 1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self, wanted: int, now: float) -> int:
        elapsed = max(0.0, now - self.stamp)
        self.tokens = min(float(self.per_minute), self.tokens + elapsed * self.per_minute / 60.0)
        self.stamp = max(self.stamp, now)
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted


class RuntimeControl:
    def __init__(self, own_providers: Iterable[str] = ()) -> None:
        self.own = frozenset(own_providers)
        self.rows: dict[str, ProviderControl] = {}
        self._probes: dict[str, ProbeBudget] = {}

    def update(self, rows: Iterable[ProviderControl]) -> None:
        self.rows = {row.provider: row for row in rows}

    def controlled(self, channel: Channel) -> bool:
        return any(row.channel is channel for row in self.rows.values())

    def active(self, channel: Channel) -> ProviderControl | None:
        """The provider that sends this channel now (None: nobody may send it)."""
        usable = [r for r in self.rows.values() if r.channel is channel and r.usable]
        return min(usable, key=lambda r: (r.priority, r.provider), default=None)

    def mine(self, channel: Channel) -> ProviderControl | None:
        """This worker's provider if it is the active one of the channel."""
        active = self.active(channel)
        if active is None or (self.own and active.provider not in self.own):
            return None
        return active

    def allowed_channels(self, channels: Iterable[Channel]) -> frozenset[Channel]:
        return frozenset(c for c in channels if not self.controlled(c) or self.mine(c) is not None)

    def claim_size(self, channel: Channel, default: int, now: float) -> int:
        """How many messages of `channel` to claim now: 0 when standing by, probes when half-open."""
        if not self.controlled(channel):
            return default
        row = self.mine(channel)
        if row is None:
            return 0
        if row.circuit_state is CircuitState.HALF_OPEN:
            budget = self._probes.setdefault(row.provider, ProbeBudget(row.half_open_probes_per_minute, stamp=now))
            return budget.take(row.batch_size, now)
        self._probes.pop(row.provider, None)
        return row.batch_size
