"""The API's part of the `outbound` command: `outbound api`, `outbound apikey create|revoke|list`, and
the API server that `outbound run` starts beside the worker (with a demo key for org `demo`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
from fastapi import APIRouter

from outbound_sender import app as processes
from outbound_sender import runtime
from outbound_sender.api.app import create_app
from outbound_sender.api.auth import create_key, hash_secret, parse_token
from outbound_sender.api.ops import Readiness
from outbound_sender.api.server import api_server
from outbound_sender.cli_support import connection
from outbound_sender.config import AllSettings
from outbound_sender.metrics import DatabaseMetrics, Metrics
from outbound_sender.observability.exposition import metrics_server
from outbound_sender.store import api_keys
from outbound_sender.store.db import connect
from outbound_sender.webhooks.router import router, webhook_config

DEMO_ORG = "demo"
DEMO_TO = "+14155552671"


@contextlib.asynccontextmanager
async def api_running(
    dsn: str,
    settings: AllSettings,
    stop: asyncio.Event,
    metrics: DatabaseMetrics,
    *,
    readiness: Readiness | None = None,
) -> AsyncIterator[None]:
    """Serve the app on OUTBOUND_HTTP_HOST:OUTBOUND_HTTP_PORT until `stop` (or the block ends); with
    the message API on, the metrics on OUTBOUND_HTTP_HOST:OUTBOUND_METRICS_PORT beside it. A worker
    supervisor passes its pod's metrics (no process metrics of its own: no webhooks) and `readiness`."""
    routers: list[APIRouter] = []
    if isinstance(metrics, Metrics):
        routers = webhook_routers(settings, metrics, lambda: fastapi_app.state.api.pool)
    fastapi_app = create_app(
        dsn,
        settings=settings.api,
        metrics=metrics,
        redis_url=settings.base.redis_url,
        extra_routers=routers,
        callbacks=settings.callbacks,
        readiness=readiness,
    )
    base = settings.base
    servers = [api_server(fastapi_app, base.outbound_http_host, base.outbound_http_port, settings.api)]
    if settings.api.enabled:
        servers.append(metrics_server(metrics.registry, base.outbound_http_host, settings.metrics.port))
    tasks = [asyncio.create_task(processes.serve_until(server, stop)) for server in servers]
    try:
        for server in servers:
            await processes.wait_started(server, timeout=30)
        print(f"HTTP API on http://{base.outbound_http_host}:{base.outbound_http_port}", flush=True)
        if settings.api.enabled:
            where = f"http://{base.outbound_http_host}:{settings.metrics.port}/actuator/prometheus"
            print(f"metrics on {where} (OUTBOUND_METRICS_PORT)", flush=True)
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def webhook_routers(settings: AllSettings, metrics: Metrics, pool: Callable[[], asyncpg.Pool]) -> list[APIRouter]:
    """The delivery webhooks, verified with the providers' secrets (the sandboxes' under make run)."""
    config = processes.webhook_provider_settings(settings) if settings.api.enabled else None
    if config is None:
        return []
    return [router(webhook_config(config), pool, metrics=metrics)]


async def serve_api(settings: AllSettings) -> int:
    stop = asyncio.Event()
    processes.install_stop_signals(stop)
    with runtime.database(settings.base) as dsn:
        async with api_running(dsn, settings, stop, Metrics()):
            await stop.wait()
    return 0


async def apikey_create(settings: AllSettings, org: str, name: str) -> int:
    async with connection(settings) as conn:
        key = await create_key(conn, org, name)
    print(f"created key id={key.key_id} org={org}\n{key.token}\n(store it now: it is not shown again)")
    return 0


async def apikey_revoke(settings: AllSettings, key_id: str) -> int:
    async with connection(settings) as conn:
        row = await api_keys.revoke(conn, key_id)
    print(f"revoked key id={key_id} org={row['org_id']}" if row else f"no live key {key_id}")
    return 0 if row else 1


async def apikey_list(settings: AllSettings, org: str | None) -> int:
    async with connection(settings) as conn:
        rows = await api_keys.list_keys(conn, org)
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "live"
        print(f"{row['id']}  org={row['org_id']}  name={row['name'] or '-'}  {state}")
    return 0


async def demo_token(dsn: str, state_dir: Path) -> str:
    """The demo org's key: the one saved in the state folder while it is still live, else a new one."""
    path = state_dir / "demo-api-key"
    conn = await connect(dsn)
    try:
        saved = path.read_text().strip() if path.exists() else ""
        key = parse_token(saved)
        row = await api_keys.lookup(conn, key.key_id) if key else None
        if key and row and row["secret_hash"] == hash_secret(key.secret):
            return saved
        token = (await create_key(conn, DEMO_ORG, "make run demo")).token
    finally:
        await conn.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    os.chmod(path, 0o600)
    return token


async def print_api_howto(dsn: str, settings: AllSettings) -> None:
    token = await demo_token(dsn, settings.base.outbound_state_dir)
    url = f"http://127.0.0.1:{settings.base.outbound_http_port}/v1/messages"
    body = f'{{"channel":"SMS","to":"{DEMO_TO}","body":"hi from curl"}}'
    print(
        f"\nHTTP API (org {DEMO_ORG}; key saved in {settings.base.outbound_state_dir}/demo-api-key):\n"
        f"  export OUTBOUND_API_KEY={token}\n"
        f'  curl -s {url} -H "Authorization: Bearer $OUTBOUND_API_KEY" -H "Content-Type: application/json" '
        f"-d '{body}'\n"
        f'  curl -s "{url}?limit=5" -H "Authorization: Bearer $OUTBOUND_API_KEY"\n'
        f"  OpenAPI: http://127.0.0.1:{settings.base.outbound_http_port}/openapi.json",
        flush=True,
    )
