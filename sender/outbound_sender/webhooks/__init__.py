"""Delivery webhooks: signature schemes (signatures), payload parsing (events), recording (store),
and the FastAPI router factory the HTTP API mounts (`webhooks.router(config, pool)`)."""

from outbound_sender.webhooks.router import WebhookConfig, router

__all__ = ["WebhookConfig", "router"]
