"""The delivery webhook endpoints, as a FastAPI APIRouter the HTTP API mounts.

    router(config: WebhookConfig, pool: PoolSource, *, metrics: Metrics | None = None) -> APIRouter

Each provider's entry in providers/registry.py says where its receipts arrive (a path under the
prefix), which handler answers each HTTP method there, and which settings fields verify them;
docs/providers.md lists the routes. The handlers are the providers' own (webhooks/<provider>.py),
sharing Endpoints.

`prefix` is config.path_prefix (default /webhooks). `pool` is an asyncpg pool, or a zero-argument
callable returning one (resolved per request, so the app can create its pool at start-up).
endpoints.py says what each answer means.
"""

from __future__ import annotations

import types

from fastapi import APIRouter

from outbound_sender.metrics import Metrics
from outbound_sender.providers import registry
from outbound_sender.providers.accounts import AllProviderSettings
from outbound_sender.webhooks.endpoints import Endpoints, PoolSource, WebhookConfig

__all__ = ["PoolSource", "WebhookConfig", "router", "webhook_config"]


def router(config: WebhookConfig, pool: PoolSource, *, metrics: Metrics | None = None) -> APIRouter:
    """The webhook endpoints of every registered provider under config.path_prefix."""
    endpoints = Endpoints(config, pool, metrics)
    api = APIRouter(prefix=config.path_prefix, tags=["webhooks"])
    sources = registry.with_webhooks()
    if metrics is not None:
        metrics.init_webhooks([p.name for p in sources])
    for provider in sources:
        assert provider.webhook is not None
        for method, handler in provider.webhook.handlers.items():
            bound = types.MethodType(handler, endpoints)  # FastAPI reads the request parameter from it
            api.add_api_route(provider.webhook.path, bound, methods=[method], include_in_schema=False)
    return api


def webhook_config(settings: AllProviderSettings) -> WebhookConfig:
    """The webhooks' configuration: every provider's account (each handler reads its own secrets and
    account there) and the router's own settings."""
    return WebhookConfig(
        accounts=dict(settings.accounts),
        public_url=settings.webhook.public_url,
        path_prefix=settings.webhook.path_prefix,
        max_body_bytes=settings.webhook.max_body_bytes,
    )
