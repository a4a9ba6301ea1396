"""/healthz, /readyz, the Prometheus exposition, correlation ids, and the API-disabled mode."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import httpx
import pytest

from outbound_sender.api.app import api_pool
from outbound_sender.api.auth import create_key
from outbound_sender.api_commands import api_running
from outbound_sender.config import AllSettings, MetricsSettings, ProviderSettings, Settings
from outbound_sender.embedded import free_port
from outbound_sender.metrics import Metrics
from tests.integration.api.conftest import SMS, Api, api_settings, serving


async def test_health_and_readiness(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok", "reason": None}
        assert (await anonymous.get("/readyz")).status_code == 200


async def test_not_ready_while_migrations_are_missing(api: Api, db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        response = await anonymous.get("/readyz")
        assert (await anonymous.get("/healthz")).status_code == 200
    assert response.status_code == 503
    assert "migrations are not current" in response.json()["reason"]


async def test_metrics_are_on_their_own_port_not_on_the_api_port(db_dsn: str) -> None:
    """The exposition answers without a key and names every organisation (WhatsApp quota gauges): the
    public API port served it to anyone. `outbound api` now serves it on OUTBOUND_METRICS_PORT only."""
    settings = AllSettings()
    settings.base = Settings(outbound_http_host="127.0.0.1", outbound_http_port=free_port())
    settings.metrics = MetricsSettings(port=free_port())
    settings.provider = ProviderSettings(kind="null")
    settings.api = api_settings()
    pool = await api_pool(db_dsn, 1)
    token = (await create_key(pool, "acme")).token
    await pool.close()
    api = f"http://127.0.0.1:{settings.base.outbound_http_port}"
    stop = asyncio.Event()
    async with (
        api_running(db_dsn, settings, stop, Metrics()),
        httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        assert (await client.post("/v1/messages", json=SMS)).status_code == 201
        for path in ("/actuator/prometheus", "/metrics"):
            on_api_port = await client.get(path)
            assert on_api_port.status_code == 404
            assert "outbound_api_" not in on_api_port.text
            text = (await client.get(f"http://127.0.0.1:{settings.metrics.port}{path}")).text
            created = 'outbound_api_request_duration_seconds_count{method="POST",route="/v1/messages",status="201"} 1.0'
            assert created in text
            assert 'outbound_api_messages_created_total{channel="SMS"} 1.0' in text
        assert (await client.get("/healthz")).status_code == 200


async def test_correlation_id_is_returned_stored_and_logged(
    db_dsn: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="OutboundMessageService")
    async with serving(db_dsn, api_settings(access_log=True)) as api, api.client() as client:
        given = await client.post("/v1/messages", json=SMS, headers={"X-Correlation-ID": "abc-123-def"})
        generated = await client.post("/v1/messages", json=SMS)
        invalid = await client.get("/v1/messages/1", headers={"X-Correlation-ID": "has spaces"})
    assert given.headers["X-Correlation-ID"] == "abc-123-def"
    assert given.json()["correlation_id"] == "abc-123-def"
    assert len(generated.headers["X-Correlation-ID"]) == 32
    assert generated.json()["correlation_id"] == generated.headers["X-Correlation-ID"]
    assert invalid.status_code == 422
    assert invalid.json()["correlation_id"] == invalid.headers["X-Correlation-ID"] != "has spaces"
    stored = await db.fetchval("SELECT correlation_id FROM outbound_message WHERE id = $1", given.json()["id"])
    assert stored == "abc-123-def"
    fields = [getattr(r, "fields", {}) for r in caplog.records if r.name == "OutboundMessageService"]
    logged = next(f for f in fields if f.get("correlationId") == "abc-123-def")
    assert logged["correlation_id"] == "abc-123-def"
    assert logged["messageId"] == given.json()["id"]
    assert logged["orgId"] == "acme"


async def test_with_the_api_disabled_only_operations_are_served(db_dsn: str) -> None:
    async with serving(db_dsn, api_settings(enabled=False)) as api, api.client() as client:
        assert (await client.post("/v1/messages", json=SMS)).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/actuator/prometheus")).status_code == 200
        assert "/v1/messages" not in (await client.get("/openapi.json")).json()["paths"]
