"""The WhatsApp daily quota ledger (PostgreSQL of record).

A WhatsApp send first reserves one unit of its organisation's quota; a definite failure gives it
back; an ambiguous one keeps it (the provider may have counted it). When nothing is left, or the
organisation is throttled, the message is deferred until the window resets: it waits QUEUED and
does not burn an attempt.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from outbound_sender.store.queries import sql

DAY_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class Reservation:
    org_id: str
    reset_at: dt.datetime
    used: int
    limit: int


@dataclass(frozen=True, slots=True)
class Refusal:
    org_id: str
    wait_seconds: float
    reason: str


class QuotaLedger:
    def __init__(self, pool: asyncpg.Pool, *, default_limit: int = 1000, window_seconds: float = DAY_SECONDS):
        self.pool = pool
        self.default_limit = default_limit
        self.window_seconds = window_seconds

    async def reserve(self, org_id: str) -> Reservation | Refusal:
        row = await self.pool.fetchrow(sql("quota_reserve"), org_id, self.window_seconds)
        if row is None:
            state = await self.pool.fetchrow(sql("quota_state"), org_id)
            if state is None:
                await self.pool.execute(sql("quota_ensure"), org_id, self.default_limit, self.window_seconds)
                row = await self.pool.fetchrow(sql("quota_reserve"), org_id, self.window_seconds)
            if row is None:
                return self._refusal(org_id, state)
        return Reservation(org_id, row["reset_at"], row["messages_sent_count"], row["quota_limit"])

    def _refusal(self, org_id: str, state: asyncpg.Record | None) -> Refusal:
        if state is None:
            return Refusal(org_id, 1.0, "quota row missing")
        wait = max(float(state["wait_seconds"] or 0.0), 1.0)
        throttled = state["throttle_until"] is not None and state["messages_sent_count"] < state["quota_limit"]
        reason = "throttled" if throttled else f"quota {state['messages_sent_count']}/{state['quota_limit']} used"
        return Refusal(org_id, wait, reason)

    async def release(self, reservation: Reservation) -> None:
        await self.pool.execute(sql("quota_release"), reservation.org_id, reservation.reset_at)
