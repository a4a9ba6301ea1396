"""The metrics endpoint: /actuator/prometheus (the runbook's path) and /metrics, from one registry.

A process serving the message API runs `metrics_server` on OUTBOUND_METRICS_PORT beside it (the API
port does not serve metrics: they answer without a key and name every organisation); a worker-only
process serves them on its service port with /healthz and /readyz (api/ops.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, make_asgi_app

METRICS_PATHS = ("/actuator/prometheus", "/metrics")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def metrics_app(registry: CollectorRegistry) -> ASGIApp:
    """ASGI app serving the registry at METRICS_PATHS (text or OpenMetrics, gzip on request)."""
    prometheus = make_asgi_app(registry)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"] in METRICS_PATHS:
            await prometheus(scope, receive, send)
        else:
            await _not_found(send)

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _not_found(send: Send) -> None:
    body = b"not found: metrics are at /actuator/prometheus and /metrics\n"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def metrics_server(registry: CollectorRegistry, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the metrics endpoint alone; logs go through our logging setup."""
    config = uvicorn.Config(
        metrics_app(registry),
        host=host,
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return uvicorn.Server(config)
