"""The operator's PostgreSQL access: named SQL from sql/*.sql, one asyncpg pool.

The operator is the single writer of provider_control and whatsapp_quota_policy; it reads queue
depth and provider success rates. Every write is skipped when the row already says the same, so a
restarted operator causes no NOTIFY storm and no updated_at churn.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import asyncpg

from outbound_operator.reconcile.circuit import Calls
from outbound_operator.reconcile.quota import Ledger
from outbound_operator.reconcile.scaling import Load
from outbound_sender.domain import ProviderControl
from outbound_sender.store.db import create_pool
from outbound_sender.store.queries import NamedSql

SQL_DIR = Path(__file__).parent / "sql"
APPLICATION = "outbound-operator"


sql = NamedSql(SQL_DIR)


class Database:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str) -> Database:
        return cls(await create_pool(dsn, min_size=1, max_size=4, application=APPLICATION))

    async def close(self) -> None:
        await self.pool.close()

    async def now(self) -> dt.datetime:
        value: dt.datetime = await self.pool.fetchval(sql("database_now"))
        return value

    # ---- provider_control ----------------------------------------------------------------
    async def control_row(self, provider: str) -> ProviderControl | None:
        record = await self.pool.fetchrow(sql("control_row"), provider)
        return None if record is None else ProviderControl.from_row(dict(record))

    async def write_control(self, row: ProviderControl) -> None:
        await self.pool.execute(sql("control_upsert"), *row.as_args())

    async def delete_control(self, provider: str) -> None:
        await self.pool.execute(sql("control_delete"), provider)

    # ---- observations --------------------------------------------------------------------
    async def calls(self, provider: str, since: dt.datetime) -> Calls:
        record = await self.pool.fetchrow(sql("provider_calls"), provider, since)
        assert record is not None
        return Calls(record["total"], record["failures"])

    async def load(self, channel: str) -> Load:
        record = await self.pool.fetchrow(sql("channel_load"), channel)
        assert record is not None
        return Load(record["depth"], record["in_flight"])

    # ---- WhatsApp quota ------------------------------------------------------------------
    async def write_quota_policy(self, args: tuple[Any, ...]) -> None:
        await self.pool.execute(sql("quota_policy_upsert"), *args)

    async def delete_quota_policy(self, org_id: str) -> None:
        await self.pool.execute(sql("quota_policy_delete"), org_id)

    async def ledger(self, org_id: str) -> Ledger | None:
        record = await self.pool.fetchrow(sql("ledger_row"), org_id)
        return None if record is None else Ledger.from_record(dict(record))

    async def set_ledger_limit(self, org_id: str, limit: int, period_seconds: int) -> None:
        await self.pool.execute(sql("ledger_set_limit"), org_id, limit, float(period_seconds))
