"""Enqueue and look up messages. Inserting is one statement in one transaction; the table's
trigger NOTIFYs waiting workers when that transaction commits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from outbound_sender.domain import FINAL_STATUSES, NewMessage, Status
from outbound_sender.store.queries import sql


async def enqueue(conn: asyncpg.Connection | asyncpg.Pool, message: NewMessage) -> int:
    """Insert one message (QUEUED); returns its id."""
    row = await conn.fetchrow(
        sql("insert_message"),
        message.org_id,
        message.dossier_id,
        message.channel.value,
        message.to_recipient,
        message.template_code,
        message.template_language,
        message.template_params,
        message.subject,
        message.body,
        message.priority,
        message.max_attempts,
        message.correlation_id,
        message.idempotency_key,
        None,
        message.send_at,
    )
    assert row is not None
    return int(row["id"])


def _columns(messages: Sequence[NewMessage]) -> list[list[Any]]:
    return [
        [m.org_id for m in messages],
        [m.dossier_id for m in messages],
        [m.channel.value for m in messages],
        [m.to_recipient for m in messages],
        [m.template_code for m in messages],
        [m.template_language for m in messages],
        [m.template_params for m in messages],
        [m.subject for m in messages],
        [m.body for m in messages],
        [m.priority for m in messages],
        [m.max_attempts for m in messages],
        [m.correlation_id for m in messages],
        [m.send_at for m in messages],
    ]


async def enqueue_many(conn: asyncpg.Connection | asyncpg.Pool, messages: Sequence[NewMessage]) -> list[int]:
    """Insert many messages in one statement (all or nothing); returns their ids in order."""
    if not messages:
        return []
    rows = await conn.fetch(sql("insert_messages"), *_columns(messages))
    return [int(row["id"]) for row in rows]


async def get_message(conn: asyncpg.Connection | asyncpg.Pool, message_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(sql("get_message"), message_id)


async def get_attempts(conn: asyncpg.Connection | asyncpg.Pool, message_id: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql("get_attempts"), message_id))


async def wait_final(
    conn: asyncpg.Connection | asyncpg.Pool,
    message_id: int,
    timeout: float = 30.0,
    on_poll: Callable[[asyncpg.Record], None] | None = None,
) -> asyncpg.Record:
    """Poll until the message reaches SENT, FAILED or CANCELLED (or raise TimeoutError); `on_poll`
    sees the row each time it is read."""
    async with asyncio.timeout(timeout):
        while True:
            row = await get_message(conn, message_id)
            if row is None:
                raise LookupError(f"message {message_id} does not exist")
            if on_poll is not None:
                on_poll(row)
            if Status(row["status"]) in FINAL_STATUSES:
                return row
            await asyncio.sleep(0.1)
