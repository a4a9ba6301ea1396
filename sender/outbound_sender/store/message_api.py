"""Message queries of the HTTP API, each scoped by organisation: idempotent create (one or a batch
in one transaction), fetch with attempts, list with a keyset cursor, cancel. A created message keeps
the request's trace context when tracing is on (docs/tracing.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from outbound_sender.domain import NewMessage
from outbound_sender.store.queries import sql
from outbound_sender.tracing import current_traceparent

Executor = asyncpg.Connection | asyncpg.Pool


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before for a request with different content."""


@dataclass(frozen=True, slots=True)
class Created:
    rows: list[asyncpg.Record]
    created: bool  # False: an earlier request with the same key and content made these rows


@dataclass(frozen=True, slots=True)
class ListFilter:
    status: str | None = None
    channel: str | None = None
    dossier_id: str | None = None
    template_code: str | None = None
    correlation_id: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    after: tuple[dt.datetime, int] | None = None  # keyset cursor: (created_at, id) of the last row seen


def _row(m: NewMessage, request_hash: str | None, traceparent: str | None) -> list[Any]:
    return [
        m.org_id, m.dossier_id, m.channel.value, m.to_recipient, m.template_code, m.template_language,
        m.template_params, m.subject, m.body, m.priority, m.max_attempts, m.correlation_id,
        m.idempotency_key, request_hash, m.send_at, traceparent,
    ]  # fmt: skip


def _check_replay(rows: Sequence[asyncpg.Record], count: int, request_hash: str) -> None:
    if len(rows) != count or any(row["request_hash"] != request_hash for row in rows):
        raise IdempotencyConflict("the Idempotency-Key was used for a different request")


async def create_one(pool: Executor, message: NewMessage, request_hash: str) -> Created:
    """Insert, or with an idempotency key already used return the original (same content only)."""
    for _ in range(3):  # the original can vanish between the two statements only if deleted
        row = await pool.fetchrow(sql("api_insert_message"), *_row(message, request_hash, current_traceparent()))
        if row is not None:
            return Created([row], True)
        rows = await pool.fetch(sql("api_find_idempotent"), message.org_id, [message.idempotency_key])
        if rows:
            _check_replay(rows, 1, request_hash)
            return Created(list(rows), False)
    raise IdempotencyConflict("the Idempotency-Key is being reused concurrently; retry")


async def create_batch(pool: asyncpg.Pool, messages: Sequence[NewMessage], request_hash: str) -> Created:
    """All rows in one transaction; a replay of the same batch returns the original rows."""
    traceparent = current_traceparent()
    columns = [list(column) for column in zip(*(_row(m, request_hash, traceparent) for m in messages), strict=True)]
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(sql("api_insert_messages"), *columns)
        if len(rows) == len(messages):
            return Created(sorted(rows, key=lambda r: r["id"]), True)
        if rows:
            raise IdempotencyConflict("the Idempotency-Key was used for a batch of other messages")
        keys = [m.idempotency_key for m in messages]
        existing = await conn.fetch(sql("api_find_idempotent"), messages[0].org_id, keys)
        _check_replay(existing, len(messages), request_hash)
        return Created(list(existing), False)


async def get_with_attempts(
    pool: asyncpg.Pool, org_id: str, message_id: int
) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(sql("api_get_message"), message_id, org_id)
        if row is None:
            return None
        attempts = await conn.fetch(sql("api_get_attempts"), message_id, org_id)
    return row, list(attempts)


async def list_page(conn: Executor, org_id: str, f: ListFilter, limit: int) -> list[asyncpg.Record]:
    after_at, after_id = f.after if f.after else (None, None)
    args = [f.status, f.channel, f.dossier_id, f.template_code, f.correlation_id, f.created_after, f.created_before]
    return list(await conn.fetch(sql("api_list_messages"), org_id, *args, after_at, after_id, limit))


async def cancel(pool: asyncpg.Pool, org_id: str, message_id: int) -> tuple[asyncpg.Record | None, bool]:
    """(row, cancelled_now). A QUEUED message becomes CANCELLED; otherwise the row as it is (or None)."""
    row = await pool.fetchrow(sql("api_cancel_message"), message_id, org_id)
    if row is not None:
        return row, True
    return await pool.fetchrow(sql("api_get_message"), message_id, org_id), False
