"""Refresh the database-derived gauges every OUTBOUND_METRICS_UPDATE_INTERVAL_MS with one query.

One dedicated connection (application_name outbound-metrics, statement_timeout below the interval),
so a slow database delays the gauges, never the worker. On failure the last snapshot stays exported
and outbound_metrics_last_refresh_timestamp_seconds stops moving: the OutboundMetricsStale alert
says so, and the connection is re-opened on the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg

from outbound_sender.metrics import DatabaseMetrics
from outbound_sender.observability.gauges import Snapshot
from outbound_sender.store.db import connect
from outbound_sender.store.snapshot import read_snapshot

log = logging.getLogger("outbound.metrics")
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)


class GaugeRefresher:
    def __init__(self, dsn: str, metrics: DatabaseMetrics, *, interval_seconds: float) -> None:
        self.dsn = dsn
        self.metrics = metrics
        self.interval = interval_seconds
        self._conn: asyncpg.Connection | None = None

    async def refresh_once(self) -> Snapshot:
        """Read one snapshot and export it; raises the database error (and counts it)."""
        started = time.perf_counter()
        try:
            conn = await self._connection()
            snapshot = await read_snapshot(conn)
        except DB_ERRORS:
            self.metrics.refresh_errors.inc()
            await self._drop_connection()
            raise
        self.metrics.database.update(snapshot)
        self.metrics.refresh_duration.observe(time.perf_counter() - started)
        self.metrics.refresh_timestamp.set_to_current_time()
        return snapshot

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh until `stop` is set; database trouble is logged and retried next round."""
        try:
            while not stop.is_set():
                try:
                    await self.refresh_once()
                except DB_ERRORS as error:
                    log.warning("metrics refresh failed", extra={"fields": {"error": repr(error)}})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await self._drop_connection()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            timeout_ms = max(int(min(self.interval, 5.0) * 1000), 100)
            settings = {"application_name": "outbound-metrics", "statement_timeout": str(timeout_ms)}
            self._conn = await connect(self.dsn, timeout=10, server_settings=settings)
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
