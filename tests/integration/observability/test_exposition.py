"""The metrics endpoint: the runbook's path and the /metrics alias, from a real HTTP server."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from outbound_sender.config import AllSettings, MetricsSettings, Settings, load_settings
from outbound_sender.embedded import free_port
from outbound_sender.metrics import Metrics
from outbound_sender.observability.service import observe
from tests.integration.observability import harness


async def test_both_paths_serve_the_registry_and_others_are_404() -> None:
    metrics = Metrics()
    metrics.send_success.labels("SMS", "sandbox").inc()
    stop = asyncio.Event()
    port, served = await harness.serve_metrics(metrics, stop)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for path in ("/actuator/prometheus", "/metrics"):
                response = await client.get(path)
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain")
                assert 'outbound_message_send_success_total{channel="SMS",provider="sandbox"} 1.0' in response.text
            openmetrics = await client.get("/actuator/prometheus", headers={"Accept": "application/openmetrics-text"})
            assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
            assert (await client.get("/")).status_code == 404
    finally:
        stop.set()
        await served


async def test_observe_refreshes_gauges_and_serves_them_on_the_service_port(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    settings = AllSettings()
    port = free_port()
    settings.base = Settings(outbound_http_host="127.0.0.1", outbound_http_port=port)
    settings.metrics = MetricsSettings(update_interval_ms=100)
    await db.execute("INSERT INTO outbound_message (org_id, channel, to_recipient) VALUES ('o', 'SMS', '+15550009999')")
    metrics, stop = Metrics(), asyncio.Event()
    task = asyncio.create_task(observe(db_dsn, metrics, settings, stop, serve=True))
    try:
        async with asyncio.timeout(15), httpx.AsyncClient() as client:
            while True:
                try:
                    text = (await client.get(f"http://127.0.0.1:{port}/actuator/prometheus")).text
                except httpx.ConnectError:
                    text = ""
                if 'outbound_message_queue_depth{status="queued"} 1.0' in text:
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task


@pytest.mark.parametrize("period_ms", ["100", "3600000"])
async def test_the_gauges_refresh_at_the_update_interval_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, db: asyncpg.Connection, db_dsn: str, period_ms: str
) -> None:
    monkeypatch.setenv("OUTBOUND_METRICS_UPDATE_INTERVAL_MS", period_ms)
    insert = "INSERT INTO outbound_message (org_id, channel, to_recipient) VALUES ('o', 'SMS', '+15550009999')"
    await db.execute(insert)
    metrics, stop = Metrics(), asyncio.Event()

    def queued() -> float | None:
        return metrics.registry.get_sample_value("outbound_message_queue_depth", {"status": "queued"})

    async def until_queued(count: float) -> None:
        async with asyncio.timeout(15):
            while queued() != count:
                await asyncio.sleep(0.05)

    task = asyncio.create_task(observe(db_dsn, metrics, load_settings(), stop, serve=False))
    try:
        await until_queued(1)  # the refresh at start
        await db.execute(insert)
        if period_ms == "100":
            await until_queued(2)
        else:
            await asyncio.sleep(1.5)  # fifteen short periods
            assert queued() == 1
    finally:
        stop.set()
        await task
