"""Recording delivery receipts: one statement per webhook request (store/delivery.py).

Events are checked when parsed (webhooks.events), so the database should accept every one. If it
still refuses a value (a data error, not a connection failure), the batch is recorded one event at
a time and only the events it refuses are left out, counted as malformed: a good event is never
lost because of a bad neighbour.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import asyncpg

from outbound_sender import tracing
from outbound_sender.store import delivery
from outbound_sender.webhooks.events import DeliveryEvent

log = logging.getLogger("webhooks")


@dataclass(frozen=True, slots=True)
class RecordStats:
    received: int
    recorded: int  # new events (the rest were duplicates)
    unmatched: int  # new events that found no message
    advanced: int  # messages whose delivery state moved forward (or were settled)
    resolved_ambiguous: int  # messages settled as SENT by a receipt after an ambiguous send
    malformed: int = 0  # events the database refused (see the module docstring)
    receipts: tuple[tuple[int, str | None], ...] = ()  # (message id, delivery status) of each new receipt

    @property
    def duplicates(self) -> int:
        return self.received - self.recorded - self.malformed


def _columns(events: Sequence[DeliveryEvent]) -> list[list[object]]:
    return [
        [e.provider for e in events],
        [e.event_id for e in events],
        [e.raw_status for e in events],
        [e.status.value if e.status else None for e in events],
        [e.provider_message_id for e in events],
        [e.outbound_id for e in events],
        [e.occurred_at for e in events],
        [e.error_code.value if e.error_code else None for e in events],
        [e.provider_code for e in events],
        [e.error_message for e in events],
        [e.channel.value for e in events],
    ]


# A value the database will not take: a server-side data error (class 22: bad encoding, out of
# range), an index row too large, or asyncpg refusing to encode an argument (a ValueError).
REFUSED = (asyncpg.DataError, asyncpg.ProgramLimitExceededError, ValueError)


async def record(db: asyncpg.Pool | asyncpg.Connection, events: Sequence[DeliveryEvent]) -> RecordStats:
    if not events:
        return RecordStats(0, 0, 0, 0, 0)
    try:
        return await _record(db, events)
    except REFUSED:
        if len(events) == 1:
            return RecordStats(1, 0, 0, 0, 0, malformed=1)
    total = RecordStats(0, 0, 0, 0, 0)
    for event in events:
        stats = await record(db, [event])
        total = RecordStats(*(a + b for a, b in zip(astuple(total), astuple(stats), strict=True)))
    return total


async def _record(db: asyncpg.Pool | asyncpg.Connection, events: Sequence[DeliveryEvent]) -> RecordStats:
    values = await delivery.record_events(db, _columns(events))
    receipts = tuple(zip(values.pop("receipt_message_ids"), values.pop("receipt_statuses"), strict=True))
    return RecordStats(**values, receipts=receipts)


async def trace_receipts(
    db: asyncpg.Pool | asyncpg.Connection, provider: str, channel: str, stats: RecordStats, started_ns: int
) -> None:
    """The new receipts' spans, each in its message's trace (tracing on only, docs/tracing.md). The
    receipts are recorded already: a failed look-up of the stored contexts costs their spans, never
    a provider's retry."""
    ids = sorted({message_id for message_id, _ in stats.receipts})
    try:
        contexts = await delivery.traceparents(db, ids)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        fields = {"provider": provider, "error": type(error).__name__}
        log.warning("receipt spans skipped: trace context not read", extra={"fields": fields})
        return
    receipts = [tracing.Receipt(mid, contexts.get(mid), status) for mid, status in stats.receipts]
    tracing.receipt_spans(provider, channel, receipts, started_ns)


async def events_of(db: asyncpg.Pool | asyncpg.Connection, message_id: int) -> list[asyncpg.Record]:
    return await delivery.events_of(db, message_id)


class ReceiptCheck:
    """Asks the database whether the attempt a retry follows has a positive delivery receipt.

    The dispatcher calls it before sending a retry, so that a message whose earlier send was in
    fact accepted (ambiguous timeout, crash before recording) is settled instead of sent twice.
    Only a receipt of that open attempt counts (store/sql/delivery.sql, accepted_receipt).
    It borrows the worker's pool (bound when the worker starts), so a worker process keeps to its
    three connections; unbound, it answers "no receipt" (at least once stays true).
    """

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None

    def bind(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self, message_id: int) -> str | None:
        """The receipt's provider message id ('' when it had none), or None without a receipt."""
        if self._pool is None:
            return None
        return await delivery.accepted_receipt(self._pool, message_id)

    async def aclose(self) -> None:
        self._pool = None
