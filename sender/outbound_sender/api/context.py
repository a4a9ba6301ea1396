"""What the routes share for the life of the app: the pool, key verification, the limiter, metrics."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from outbound_sender.api.auth import Authenticator, FailureThrottle
from outbound_sender.api.metrics import ApiMetrics
from outbound_sender.api.problems import ApiError
from outbound_sender.api.ratelimit import RateLimiter
from outbound_sender.api.settings import ApiSettings
from outbound_sender.callbacks.settings import CallbackSettings
from outbound_sender.callbacks.targets import Resolver, system_resolver


@dataclass
class ApiContext:
    pool: asyncpg.Pool
    settings: ApiSettings
    auth: Authenticator
    limiter: RateLimiter
    metrics: ApiMetrics
    now: Callable[[], dt.datetime]
    throttle: FailureThrottle
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    resolver: Resolver = system_resolver  # callback URLs' hosts (tests give their own)


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


Context = Annotated[ApiContext, Depends(get_context)]
_bearer = HTTPBearer(auto_error=False, bearerFormat="obk_<id>_<secret>", description="An organisation's API key.")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="outbound"'})


async def get_tenant(
    request: Request,
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The organisation of the request's API key; 401 without a valid key, 429 over its rate or
    after too many wrong keys from the client's address (a request without a key is always a 401:
    it costs no lookup and guesses nothing)."""
    if credentials is None:
        raise _unauthorized("send an API key: Authorization: Bearer obk_...")
    address = request.client.host if request.client else "unknown"
    blocked = context.throttle.retry_after(address)
    if blocked is not None and not context.auth.recently_good(credentials.credentials):
        headers = {"Retry-After": str(max(1, math.ceil(blocked)))}
        message = "too many failed authentications from this address; retry later"
        raise ApiError(429, "auth_throttled", message, headers=headers)
    org_id = await context.auth.org_for(credentials.credentials)
    if org_id is None:
        context.throttle.failed(address)
        raise _unauthorized("the API key is unknown or revoked")
    request.state.org_id = org_id
    decision = await context.limiter.hit(org_id)
    if not decision.allowed:
        context.metrics.rate_limited.inc()
        headers = {"Retry-After": decision.retry_after_header}
        raise ApiError(429, "rate_limited", "too many requests for this organisation; retry later", headers=headers)
    return org_id


Tenant = Annotated[str, Depends(get_tenant)]
