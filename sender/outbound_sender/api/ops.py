"""Operational endpoints, served on the same port whether or not the message API is enabled:
/healthz (the process answers) and /readyz (the database answers and its migrations are current).

The Prometheus exposition (/actuator/prometheus, the runbook's URL, and /metrics) is on this port only
where the message API is off (worker pods, `expose_metrics=True`): it answers without a key and labels
the WhatsApp quota gauges by organisation, so a process serving the public API exposes it on its own
port (OUTBOUND_METRICS_PORT, api_commands.py) and answers 404 here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

import asyncpg
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel

from outbound_sender.api.context import Context
from outbound_sender.store import migrations

log = logging.getLogger("OutboundMessageService")
READY_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: str
    reason: str | None = None


async def database_ready(pool: asyncpg.Pool) -> str | None:
    """None when ready, else why not."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), pool.acquire() as conn:
            current = await migrations.is_current(cast(asyncpg.Connection, conn))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return f"database unreachable: {type(error).__name__}"
    return None if current else "database migrations are not current (run: outbound migrate)"


# More of the process that must be ready for /readyz: None when it is, else why not (worker_pod.py:
# every worker process of the pod has started and none has ended).
Readiness = Callable[[], str | None]


def ops_router(
    registry: CollectorRegistry, *, expose_metrics: bool = True, readiness: Readiness | None = None
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get(
        "/readyz",
        summary="Readiness: the database answers and migrations are current",
        responses={503: {"model": Health}},
    )
    async def readyz(context: Context) -> Response:
        reason = await database_ready(context.pool)
        if reason is None and readiness is not None:
            reason = readiness()
        if reason is None:
            return JSONResponse(Health(status="ready").model_dump())
        log.warning("OutboundMessageService not ready", extra={"fields": {"reason": reason}})
        return JSONResponse(Health(status="not_ready", reason=reason).model_dump(), status_code=503)

    async def exposition() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if expose_metrics:
        for path in ("/actuator/prometheus", "/metrics"):
            router.add_api_route(path, exposition, methods=["GET"], include_in_schema=False)
    return router
