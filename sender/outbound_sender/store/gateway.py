"""The worker's store gateway: every statement the worker's units run, behind one Protocol.

The units (worker/claimer.py, completer.py, rescuer.py, follower.py, listener.py and the channel
gates) see only `WorkerGateway`; `PgWorkerGateway` runs it on PostgreSQL with the named SQL of
store/sql/worker.sql and control.sql, and the unit tests run the same units on an in-memory fake
(tests/fake_gateway.py). Rows come back as domain values, never as driver records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from outbound_sender.domain import CallResult, Channel, OutboundMessage, ProviderControl
from outbound_sender.store.db import connect, create_pool, is_transient
from outbound_sender.store.queries import sql

APPLICATION = "outbound-worker"  # application_name of the worker's connections (pg_stat_activity)
NOTIFY_CHANNEL = "outbound_message_ready"  # payload: the channel of a message that became due
CONTROL_CHANNEL = "outbound_control"  # provider_control or a quota policy changed


@dataclass(frozen=True, slots=True)
class Completion:
    """What recording one result did to its message (`applied` False: the lease was no longer ours)."""

    id: int
    channel: str
    outcome: str
    applied: bool
    status: str | None = None
    error_code: str | None = None
    latency_seconds: float | None = None
    retry_in_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Recovered:
    """A message whose lease expired, put back (QUEUED) or dead-lettered (FAILED)."""

    id: int
    channel: str
    status: str
    lease_owner: str | None


class Subscription(Protocol):
    """The LISTEN connection of one worker; it also runs statements (one at a time) between
    notifications, which go on arriving while a statement runs."""

    async def fetch(self, query: str, *args: object) -> list[Any]: ...

    async def alive(self) -> bool: ...

    def terminate(self) -> None: ...

    async def close(self) -> None: ...


Callback = Callable[[], None]


class WorkerGateway(Protocol):
    async def claim(
        self,
        channels: Collection[Channel],
        limit: int,
        worker_id: str,
        lease_seconds: float,
        on: Subscription | None = None,
    ) -> list[OutboundMessage]:
        """Claim on the pool, or on the LISTEN connection `on`."""
        ...

    async def complete(self, results: Sequence[CallResult], worker_id: str) -> list[Completion]: ...

    async def release(self, results: Sequence[CallResult]) -> None: ...

    async def reroute(self, message: OutboundMessage, channel: Channel, note: str, worker_id: str) -> None: ...

    async def recover_expired(self, limit: int) -> list[Recovered]: ...

    async def control_rows(self) -> list[ProviderControl]: ...

    async def quota_policies(self) -> list[dict[str, Any]]: ...

    async def subscribe(
        self, on_ready: Callable[[str], None], on_control: Callback, on_lost: Callback
    ) -> Subscription: ...

    async def warm(self) -> None: ...


def message_from_row(row: Any) -> OutboundMessage:
    return OutboundMessage(
        id=row["id"],
        org_id=row["org_id"],
        channel=Channel(row["channel"]),
        to_recipient=row["to_recipient"],
        lease_id=row["lease_id"],
        attempt_no=row["claim_count"],
        attempt_count=row["attempt_count"],
        max_attempts=row["max_attempts"],
        body=row["body"],
        subject=row["subject"],
        template_code=row["template_code"],
        template_language=row["template_language"],
        template_params=row["template_params"] or {},
        dossier_id=row["dossier_id"],
        correlation_id=row["correlation_id"],
        priority=row["priority"],
        created_at=row["created_at"],
        traceparent=row["traceparent"],
    )


def as_arrays(results: Sequence[CallResult]) -> list[list[object]]:
    """Column arrays for the complete_batch statement, in its parameter order ($1..$15)."""
    columns: list[list[object]] = [[] for _ in range(15)]
    for r in results:
        m = r.message
        row: tuple[object, ...] = (m.id, m.lease_id, m.attempt_no, r.outcome.value, r.error_code, r.error_message)
        row += (r.provider, r.provider_code, r.provider_message, r.provider_message_id, r.http_status)
        row += (r.duration_ms, r.retry_delay_ms, r.ambiguous, m.channel.value)
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


class PgSubscription:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._busy = asyncio.Lock()  # a connection runs one statement at a time

    async def fetch(self, query: str, *args: object) -> list[Any]:
        async with self._busy:
            return list(await self.conn.fetch(query, *args))

    async def alive(self) -> bool:
        """False when the connection is gone (a transient error); any other error propagates."""
        if self.conn.is_closed():
            return False
        if self._busy.locked():
            # A claim is running on it: its error or the termination callback reports a lost
            # connection. Ending it here could leave a claim that waits on a lock to commit later,
            # its messages leased to nobody until the lease expires.
            return True
        try:
            async with self._busy:
                await self.conn.execute("SELECT 1", timeout=5)
        except Exception as error:
            if not is_transient(error):
                raise
            return False
        return True

    def terminate(self) -> None:
        self.conn.terminate()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close(timeout=5)


class PgWorkerGateway:
    """The worker's statements on a pool of two connections (claims and housekeeping; results)
    plus one LISTEN connection per subscription, which can also carry claims (`claim(on=...)`)."""

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.dsn = dsn
        self.pool = pool  # also lent to the receipt check and the WhatsApp quota ledger

    @classmethod
    async def open(cls, dsn: str) -> PgWorkerGateway:
        return cls(dsn, await create_pool(dsn, min_size=2, max_size=2, application=APPLICATION))

    async def close(self) -> None:
        await self.pool.close()

    async def claim(
        self,
        channels: Collection[Channel],
        limit: int,
        worker_id: str,
        lease_seconds: float,
        on: Subscription | None = None,
    ) -> list[OutboundMessage]:
        args = ([c.value for c in channels], limit, worker_id, lease_seconds)
        rows = await (self.pool.fetch if on is None else on.fetch)(sql("claim_batch"), *args)
        return [message_from_row(row) for row in rows]

    async def complete(self, results: Sequence[CallResult], worker_id: str) -> list[Completion]:
        rows = await self.pool.fetch(sql("complete_batch"), *as_arrays(results), worker_id)
        return [Completion(**dict(row)) for row in rows]

    async def release(self, results: Sequence[CallResult]) -> None:
        ids, leases = [r.message.id for r in results], [r.message.lease_id for r in results]
        await self.pool.execute(sql("release_leases"), ids, leases)

    async def reroute(self, message: OutboundMessage, channel: Channel, note: str, worker_id: str) -> None:
        args = (message.id, message.lease_id, channel.value, note, worker_id)
        await self.pool.execute(sql("reroute_message"), *args)

    async def recover_expired(self, limit: int) -> list[Recovered]:
        return [Recovered(**dict(row)) for row in await self.pool.fetch(sql("recover_expired_leases"), limit)]

    async def control_rows(self) -> list[ProviderControl]:
        return [ProviderControl.from_row(dict(row)) for row in await self.pool.fetch(sql("control_rows"))]

    async def quota_policies(self) -> list[dict[str, Any]]:
        return [dict(row) for row in await self.pool.fetch(sql("quota_policies"))]

    async def subscribe(
        self, on_ready: Callable[[str], None], on_control: Callback, on_lost: Callback
    ) -> PgSubscription:
        """LISTEN for due messages and control changes; `on_lost` when the connection dies."""
        conn = await connect(self.dsn, application=APPLICATION, timeout=10)
        try:
            conn.add_termination_listener(lambda _conn: on_lost())
            await conn.add_listener(NOTIFY_CHANNEL, lambda _c, _p, _n, payload: on_ready(str(payload)))
            await conn.add_listener(CONTROL_CHANNEL, lambda _c, _p, _n, _payload: on_control())
        except BaseException:
            conn.terminate()
            raise
        return PgSubscription(conn)

    async def warm(self) -> None:
        """After a restart the pool reconnects lazily, one connection per concurrent use: open both
        now, so the first claim and write do not pay for the connect."""
        async with asyncio.timeout(10), self.pool.acquire(), self.pool.acquire():
            pass
