"""create_app(...): the OutboundMessageService ASGI application.

The operational endpoints (ops.py) are always served; the message API (routes.py) unless disabled
(OUTBOUND_API_ENABLED=false, for worker-only pods that serve health and metrics on the same port).
With the message API on, the metrics are not on this app: `outbound api` serves them on
OUTBOUND_METRICS_PORT (commands.api_running).
`extra_routers` are included as given (the provider webhooks' router, for one).

`python -m outbound_sender.api.app` prints the OpenAPI document (docs/openapi.json is that output).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Sequence
from importlib.metadata import version
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI
from starlette.middleware import Middleware

from outbound_sender import tracing
from outbound_sender.api import problems
from outbound_sender.api.auth import Authenticator, FailureThrottle
from outbound_sender.api.callbacks import router as callbacks_router
from outbound_sender.api.context import ApiContext
from outbound_sender.api.metrics import ApiMetrics
from outbound_sender.api.middleware import BodyLimit, RequestContext
from outbound_sender.api.ops import Readiness, ops_router
from outbound_sender.api.ratelimit import RateLimiter, build_limiter
from outbound_sender.api.routes import router as messages_router
from outbound_sender.api.settings import ApiSettings
from outbound_sender.api.tracing import TraceRequests
from outbound_sender.callbacks.settings import CallbackSettings
from outbound_sender.callbacks.targets import Resolver, system_resolver
from outbound_sender.metrics import DatabaseMetrics, Metrics
from outbound_sender.store.db import create_pool

DESCRIPTION = """Create, fetch, list and cancel outbound SMS, e-mail and WhatsApp messages; register callback
URLs that receive every status change of your messages, signed (docs/callbacks.md).

Authenticate with an organisation's API key: `Authorization: Bearer obk_...` (`outbound apikey create`).
Every error has the body `{"error": {"code", "message", "fields"}, "correlation_id"}`."""


async def api_pool(dsn: str, size: int) -> asyncpg.Pool:
    """The API's pool. Each list query is planned with its own filter values (custom plans), so the
    optional filters use their indexes; a pool passed to create_app should be made here."""
    settings = {"plan_cache_mode": "force_custom_plan", "application_name": "outbound-api"}
    return await create_pool(dsn, min_size=1, max_size=size, server_settings=settings)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_app(
    dsn: str | None = None,
    *,
    pool: asyncpg.Pool | None = None,
    settings: ApiSettings | None = None,
    metrics: DatabaseMetrics | None = None,
    limiter: RateLimiter | None = None,
    redis_url: str | None = None,
    extra_routers: Sequence[APIRouter] = (),
    now: Callable[[], dt.datetime] = _utc_now,
    callbacks: CallbackSettings | None = None,
    resolver: Resolver = system_resolver,
    readiness: Readiness | None = None,
) -> FastAPI:
    """The app; its lifespan opens the pool from `dsn` (unless `pool` is given) and the rate limiter
    (Redis-backed with `redis_url`, else in process; unless `limiter` is given); `readiness`: ops.py."""
    if dsn is None and pool is None:
        raise ValueError("create_app needs a dsn or a pool")
    settings, callback_settings = settings or ApiSettings(), callbacks or CallbackSettings()
    registry = (metrics or Metrics()).registry
    api_metrics = ApiMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            # Health and metrics only (worker pods): one connection, for /readyz.
            the_pool = pool or await api_pool(dsn or "", settings.pool_size if settings.enabled else 1)
            if pool is None:
                stack.push_async_callback(the_pool.close)
            the_limiter = limiter or build_limiter(settings.rate_limit_per_second, settings.rate_limit_burst, redis_url)
            if limiter is None:
                stack.push_async_callback(the_limiter.aclose)
            auth = Authenticator(the_pool, settings.key_cache_seconds, negative_seconds=settings.negative_cache_seconds)
            throttle = FailureThrottle(settings.auth_failures_max, settings.auth_failure_window_seconds)
            app.state.api = ApiContext(
                the_pool, settings, auth, the_limiter, api_metrics, now, throttle, callback_settings, resolver
            )
            yield

    app = FastAPI(
        title="OutboundMessageService",
        version=version("outbound-messaging"),
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        middleware=[
            # With tracing on (decided at start-up), the outermost layer: the request's span.
            *([Middleware(TraceRequests)] if tracing.enabled() else []),
            Middleware(RequestContext, metrics=api_metrics, access_log=settings.access_log),
            Middleware(BodyLimit, max_body_size=settings.max_body_bytes),
        ],
    )
    problems.install(app)
    app.include_router(ops_router(registry, expose_metrics=not settings.enabled, readiness=readiness))
    if settings.enabled:
        app.include_router(messages_router)
        app.include_router(callbacks_router)
    for router in extra_routers:
        app.include_router(router)
    return app


def openapi_document() -> dict[str, Any]:
    return create_app("postgresql://unused").openapi()


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2, sort_keys=True))
