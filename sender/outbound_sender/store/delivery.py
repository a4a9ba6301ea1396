"""Delivery receipts (store/sql/delivery.sql): recording provider webhooks' events and reading them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from outbound_sender.store.queries import sql

Db = asyncpg.Connection | asyncpg.Pool


async def record_events(db: Db, columns: Sequence[Sequence[object]]) -> dict[str, Any]:
    """Record a batch of events given as column arrays (webhooks/store.py builds them); the counts
    and the new receipts the statement reports."""
    row = await db.fetchrow(sql("record_delivery_events"), *columns)
    assert row is not None
    return dict(row)


async def traceparents(db: Db, message_ids: Sequence[int]) -> dict[int, str | None]:
    """The stored trace context of each message (docs/tracing.md)."""
    return {row["id"]: row["traceparent"] for row in await db.fetch(sql("message_traceparents"), message_ids)}


async def events_of(db: Db, message_id: int) -> list[asyncpg.Record]:
    return list(await db.fetch(sql("get_delivery_events"), message_id))


async def accepted_receipt(db: Db, message_id: int) -> str | None:
    """The provider message id of a positive receipt of the message's open attempt ('' when it had
    none), or None without one."""
    row = await db.fetchrow(sql("accepted_receipt"), message_id)
    return None if row is None else (row["provider_message_id"] or "")
