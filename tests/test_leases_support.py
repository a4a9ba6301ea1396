"""Simulating a worker that claimed messages and died."""

from __future__ import annotations

import asyncpg

from outbound_sender.domain import Channel
from outbound_sender.store.queries import sql


async def claim_as_dead_worker(
    db: asyncpg.Connection, *, lease_seconds: float, limit: int = 100
) -> list[asyncpg.Record]:
    return list(await db.fetch(sql("claim_batch"), [c.value for c in Channel], limit, "dead-worker", lease_seconds))
