"""The one statement behind the database-derived gauges (observability/refresher.py)."""

from __future__ import annotations

import asyncpg

from outbound_sender.observability.gauges import Snapshot, snapshot_from_row
from outbound_sender.store.queries import sql

QUOTA_ORGS_MAX = 500  # label cardinality cap: the organisations closest to their limit are kept


async def read_snapshot(conn: asyncpg.Connection, quota_orgs_max: int = QUOTA_ORGS_MAX) -> Snapshot:
    row = await conn.fetchrow(sql("metrics_snapshot"), quota_orgs_max)
    assert row is not None
    return snapshot_from_row(row)
