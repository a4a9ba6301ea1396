"""A correlation id given to the API reaches the worker's log lines and the provider's HTTP request."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import httpx
import pytest

from outbound_sender.metrics import Metrics
from outbound_sender.providers.sandbox import SandboxProvider
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import WorkerSettings
from tests.integration.api.conftest import SMS, Api
from tests.workers import FAST_RETRY, wait_for


async def test_correlation_id_travels_to_worker_logs_and_provider_calls(
    api: Api, db_dsn: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str | None] = []

    def provider_answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Correlation-ID"))
        if len(seen) == 1:
            return httpx.Response(503, json={"error": {"code": "TEMPORARY_ERROR", "message": "busy"}})
        return httpx.Response(201, json={"id": "sbx_1", "status": "accepted"})

    async with api.client() as client:
        created = await client.post("/v1/messages", json=SMS, headers={"X-Correlation-ID": "trace-77"})
    caplog.set_level(logging.WARNING, logger="OutboundJobWorker")
    async with httpx.AsyncClient(transport=httpx.MockTransport(provider_answer)) as http:
        provider = SandboxProvider(http, "http://sandbox.invalid")
        settings = WorkerSettings(poll_interval_ms=50, recovery_interval_ms=100, lease_seconds=30)
        worker = OutboundJobWorker(
            db_dsn, Dispatcher([provider]), settings=settings, retry=FAST_RETRY, metrics=Metrics()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await wait_for(db, "SELECT status = 'SENT' FROM outbound_message WHERE id = $1", created.json()["id"])
        finally:
            stop.set()
            await task
    assert seen == ["trace-77", "trace-77"]
    failure = next(r for r in caplog.records if r.name == "OutboundJobWorker" and "handleFailure" in r.getMessage())
    assert failure.fields["correlationId"] == "trace-77"  # type: ignore[attr-defined]
    assert failure.fields["correlation_id"] == "trace-77"  # type: ignore[attr-defined]
