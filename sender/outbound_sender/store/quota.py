"""The WhatsApp daily quota ledger (PostgreSQL of record).

A WhatsApp send first reserves one unit of its organisation's quota; a definite failure gives it
back; an ambiguous one keeps it (the provider may have counted it). The reservation asks for a
ceiling: urgent templates may use the whole quota, other messages only up to the deferral
threshold. When nothing is left under the ceiling, or the organisation is throttled, the message
waits (QUEUED, no attempt burnt) until the window resets or the throttle ends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol

import asyncpg

from outbound_sender.store.queries import sql

UNLIMITED = 2_147_483_647  # the unlimited tier still counts, against a limit it never reaches

Reason = Literal["throttled", "quota", "threshold", "missing"]


class QuotaTerms(Protocol):
    """What the ledger needs of an organisation's policy (quota/policy.py QuotaPolicy)."""

    @property
    def org_id(self) -> str: ...

    @property
    def daily_limit(self) -> int | None: ...

    @property
    def reset_period_seconds(self) -> float: ...


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
    reason: Reason
    used: int = 0
    limit: int = 0

    def describe(self) -> str:
        if self.reason == "throttled":
            return f"WhatsApp throttled for this organisation; retry in {self.wait_seconds:.0f} s"
        if self.reason == "threshold":
            return f"non-urgent message deferred: quota {self.used}/{self.limit} above the deferral threshold"
        return f"quota {self.used}/{self.limit} used; waits for the reset in {self.wait_seconds:.0f} s"


class QuotaLedger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def reserve(self, policy: QuotaTerms, ceiling_percent: int = 100) -> Reservation | Refusal:
        args = (policy.org_id, policy.reset_period_seconds, ceiling_percent)
        row = await self.pool.fetchrow(sql("quota_reserve"), *args)
        if row is None:
            state = await self.pool.fetchrow(sql("quota_state"), policy.org_id, ceiling_percent)
            if state is None:
                limit = policy.daily_limit if policy.daily_limit is not None else UNLIMITED
                await self.pool.execute(sql("quota_ensure"), policy.org_id, limit, policy.reset_period_seconds)
                row = await self.pool.fetchrow(sql("quota_reserve"), *args)
            if row is None:
                return _refusal(policy.org_id, state)
        return Reservation(policy.org_id, row["reset_at"], row["messages_sent_count"], row["quota_limit"])

    async def release(self, reservation: Reservation) -> None:
        await self.pool.execute(sql("quota_release"), reservation.org_id, reservation.reset_at)

    async def throttle(self, org_id: str, seconds: float) -> None:
        await self.pool.execute(sql("quota_throttle"), org_id, seconds)


def _refusal(org_id: str, state: asyncpg.Record | None) -> Refusal:
    if state is None:
        return Refusal(org_id, 1.0, "missing")
    reason: Reason = "throttled" if state["throttled"] else ("quota" if state["exhausted"] else "threshold")
    wait = max(float(state["wait_seconds"] or 0.0), 1.0)
    return Refusal(org_id, wait, reason, state["messages_sent_count"], state["quota_limit"])
