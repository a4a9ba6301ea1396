"""The runbook's manual actions as bounded, audited changes (the `outbound` ops commands' gateway).

A message action selects with a `MessageFilter`, shows what matches (`preview`), then changes it
in batches of at most `batch_size` rows, each batch its own transaction together with its audit
counts (`run_batches`): an interrupted action keeps what it committed and its audit row says how
far it got. Organisation-level actions (quota, throttle) change one ledger row and report the
held messages that the change released.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from outbound_sender.domain import Channel, Status
from outbound_sender.store.queries import sql

Outcome = Literal["DONE", "INTERRUPTED", "FAILED"]


class MessageFilter(BaseModel):
    """Which messages an action takes; unset fields do not narrow the selection."""

    model_config = ConfigDict(frozen=True)

    status: Status
    org: str | None = None
    channel: Channel | None = None
    error_codes: tuple[str, ...] | None = None
    ids: tuple[int, ...] | None = None
    updated_within: dt.timedelta | None = None
    not_updated_for: dt.timedelta | None = None
    templates: tuple[str, ...] | None = None
    except_templates: tuple[str, ...] | None = None
    held_only: bool = False

    def args(self) -> tuple[Any, ...]:
        def listed(values: tuple[Any, ...] | None) -> list[Any] | None:
            return list(values) if values else None

        return (
            self.status.value,
            self.org,
            self.channel.value if self.channel else None,
            listed(self.error_codes),
            listed(self.ids),
            self.updated_within,
            self.not_updated_for,
            listed(self.templates),
            listed(self.except_templates),
            self.held_only,
        )

    def described(self) -> dict[str, Any]:
        """The selection as the audit row keeps it (JSON)."""
        return json.loads(self.model_dump_json(exclude_none=True))  # type: ignore[no-any-return]


# The change statement of each message action: (query name, extra arguments after the ids).
ACTIONS: dict[str, str] = {
    "dead-letter retry": "ops_retry",
    "dead-letter discard": "ops_archive",
    "archive": "ops_archive",
    "cancel": "ops_cancel",
    "reschedule": "ops_defer",
    "reschedule now": "ops_retry_now",
    "reset-stale": "ops_reset_stale",
    "quota release": "ops_release_held",
}


@dataclass(frozen=True)
class Preview:
    matched: int
    max_id: int
    sample: list[asyncpg.Record]


@dataclass(frozen=True)
class Result:
    audit_id: int
    matched: int
    changed: int
    batches: int


class Audit(BaseModel):
    """Who does what and why: required for every change."""

    actor: str = Field(min_length=1)
    reason: str = Field(min_length=1, pattern=r"\S")


async def preview(conn: asyncpg.Connection, selection: MessageFilter, sample: int = 10) -> Preview:
    row = await conn.fetchrow(sql("ops_count"), *selection.args())
    assert row is not None
    max_id = int(row["max_id"] or 0)
    rows = await conn.fetch(sql("ops_match"), *selection.args(), 0, max_id, sample) if sample else []
    return Preview(int(row["matched"]), max_id, list(rows))


async def _changed(conn: asyncpg.Connection, query: str, ids: list[int], extra: tuple[Any, ...]) -> int:
    """Rows changed by one change statement (each returns the ids it changed)."""
    return len(await conn.fetch(sql(query), ids, *extra))


async def start_audit(conn: asyncpg.Connection, who: Audit, action: str, params: dict[str, Any], matched: int) -> int:
    audit_id = await conn.fetchval(sql("ops_audit_start"), who.actor, action, who.reason, params, matched)
    return int(audit_id)


async def finish_audit(conn: asyncpg.Connection, audit_id: int, outcome: Outcome, result: dict[str, Any]) -> None:
    await conn.execute(sql("ops_audit_finish"), audit_id, outcome, result)


async def run_batches(
    conn: asyncpg.Connection,
    action: str,
    selection: MessageFilter,
    who: Audit,
    *,
    extra: tuple[Any, ...] = (),
    params: dict[str, Any] | None = None,
    batch_size: int = 500,
    on_batch: Callable[[int, int], None] | None = None,
) -> Result:
    """Apply `action` to what `selection` matches, `batch_size` rows per transaction, walking the ids
    up to the highest one matched at the start (a changed row is never taken twice). `on_batch`
    gets (rows looked at, rows changed) after each committed batch."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    query = ACTIONS[action]
    first = await preview(conn, selection, sample=0)
    audit_id = await start_audit(conn, who, action, {**selection.described(), **(params or {})}, first.matched)
    changed = batches = 0
    cursor = 0
    outcome: Outcome = "FAILED"
    try:
        while True:
            async with conn.transaction():
                rows = await conn.fetch(sql("ops_match"), *selection.args(), cursor, first.max_id, batch_size)
                if not rows:
                    break
                ids = [int(r["id"]) for r in rows]
                done = await _changed(conn, query, ids, extra)
                await conn.execute(sql("ops_audit_batch"), audit_id, done)
            changed += done
            batches += 1
            cursor = ids[-1]
            if on_batch is not None:
                on_batch(len(ids), done)
        outcome = "DONE"
    except BaseException as error:
        outcome = "FAILED" if isinstance(error, Exception) else "INTERRUPTED"
        raise
    finally:
        await finish_audit(conn, audit_id, outcome, {"changed": changed})
    return Result(audit_id, first.matched, changed, batches)


@dataclass(frozen=True)
class LedgerChange:
    """A change of one organisation's WhatsApp ledger row and what it released."""

    org: str
    before: dict[str, Any]
    after: dict[str, Any]
    released: int
    audit_id: int | None


LedgerAction = Literal["quota set", "quota halve", "throttle clear"]


def _ledger_statement(action: LedgerAction, value: int | None) -> tuple[str, tuple[Any, ...]]:
    if action == "quota set":
        return "ops_quota_set", (value,)
    if action == "quota halve":
        return "ops_quota_halve", ()
    return "ops_throttle_clear", ()


class NoLedger(LookupError):
    """The organisation has no WhatsApp quota row yet."""


async def change_ledger(
    conn: asyncpg.Connection,
    action: LedgerAction,
    org: str,
    who: Audit | None,
    value: int | None = None,
) -> LedgerChange:
    """Change the organisation's row in one transaction; `who=None` is a dry run (rolled back, no
    audit). The held messages released by the change (0006's triggers) are counted before/after."""
    query, extra = _ledger_statement(action, value)
    transaction = conn.transaction()
    await transaction.start()
    try:
        row = await conn.fetchrow(sql("ops_quota_row"), org)
        if row is None:
            raise NoLedger(f"no WhatsApp quota row for organisation {org!r} (outbound quota lists them)")
        held = int(await conn.fetchval(sql("ops_held_count"), org))
        await conn.execute(sql(query), org, *extra)
        after = await conn.fetchrow(sql("ops_quota_row"), org)
        assert after is not None
        released = held - int(await conn.fetchval(sql("ops_held_count"), org))
        change = LedgerChange(org, dict(row), dict(after), released, None)
        if who is not None:
            changed = int(dict(row) != dict(after))
            audit_id = await start_audit(conn, who, action, {"org": org, "value": value}, 1)
            await conn.execute(sql("ops_audit_batch"), audit_id, changed)
            result = {"before": _jsonable(change.before), "after": _jsonable(change.after), "released": released}
            await finish_audit(conn, audit_id, "DONE", result)
            change = LedgerChange(org, change.before, change.after, released, audit_id)
    except BaseException:
        await transaction.rollback()
        raise
    if who is None:
        await transaction.rollback()
    else:
        await transaction.commit()
    return change


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


async def throttled(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql("ops_throttled")))


async def provider_status(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql("ops_provider_status")))


async def audit_rows(conn: asyncpg.Connection, action: str | None, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql("ops_audit_list"), action, limit))


async def status_counts(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Messages by status, in status order."""
    return sorted(await conn.fetch(sql("status_counts")), key=lambda row: str(row["status"]))


async def quota_status(conn: asyncpg.Connection, org: str | None) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql("quota_status"), org))


async def dead_letter_summary(conn: asyncpg.Connection, channel: str | None, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql("ops_dead_letter_summary"), channel, limit))


async def dead_letters(
    conn: asyncpg.Connection, channel: str | None, error_code: str | None, limit: int
) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql("ops_dead_letters"), channel, error_code, limit))
