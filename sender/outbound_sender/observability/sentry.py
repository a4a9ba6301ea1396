"""Sentry error tracking: on with SENTRY_DSN, off (nothing initialised, nothing sent) without it.

`setup_sentry(worker_type=...)` is called once per process after `setup_logging`. Error-level log
records become Sentry events (the logging integration); INFO and up become breadcrumbs. Every event
carries the runbook's tags:
    correlation_id, channel, error_code   from the record's `extra={"fields": {...}}`
                                           (correlationId/correlation_id, channel, errorCode)
    worker_type                           the process role given at set-up
Recipients are scrubbed: every string of the event and of each breadcrumb goes through logs.mask
before it leaves the process; request bodies are never attached and PII collection stays at the
SDK's default (off).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sentry_sdk
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

from outbound_sender.logs import mask

# Sentry tag <- log field names that carry it (first present wins).
TAG_FIELDS: Mapping[str, tuple[str, ...]] = {
    "correlation_id": ("correlation_id", "correlationId"),
    "channel": ("channel",),
    "error_code": ("errorCode", "error_code"),
    "provider": ("provider",),
}


class SentrySettings(BaseSettings):
    """SENTRY_* environment variables (the SDK's own names)."""

    model_config = SettingsConfigDict(env_prefix="SENTRY_", extra="ignore")

    dsn: str | None = Field(None, description="Project DSN; unset: Sentry stays off.")
    environment: str | None = Field(None, description="e.g. production, staging.")
    release: str | None = Field(None, description="Version the events are attributed to.")
    sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="Share of error events sent.")


def scrub(value: Any) -> Any:
    """Mask recipients in every string of a JSON-like structure."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {key: scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


def tags_from_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    tags = {}
    for tag, names in TAG_FIELDS.items():
        value = next((fields[name] for name in names if fields.get(name) not in (None, "")), None)
        if value is not None:
            tags[tag] = str(value)
    return tags


def _record_fields(event: Event, hint: Hint) -> Mapping[str, Any]:
    record = hint.get("log_record")
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        return fields
    extra = event.get("extra", {}).get("fields")
    return extra if isinstance(extra, dict) else {}


def before_send(event: Event, hint: Hint) -> Event | None:
    """Tag from the log fields, group handleFailure events by channel and code, scrub recipients."""
    tags = tags_from_fields(_record_fields(event, hint))
    event.setdefault("tags", {}).update(tags)
    message = event.get("logentry", {}).get("message") or ""
    if str(message).startswith("handleFailure") and "error_code" in tags:
        event["fingerprint"] = ["handleFailure", tags.get("channel", ""), tags["error_code"]]
    scrubbed: Event = scrub(event)
    return scrubbed


def before_breadcrumb(crumb: Breadcrumb, _hint: BreadcrumbHint) -> Breadcrumb | None:
    scrubbed: Breadcrumb = scrub(crumb)
    return scrubbed


def setup_sentry(
    worker_type: str,
    settings: SentrySettings | None = None,
    *,
    transport: Transport | type[Transport] | None = None,
) -> bool:
    """Initialise Sentry when a DSN is configured; return whether it is on."""
    settings = settings or SentrySettings()
    if not settings.dsn:
        return False
    sentry_sdk.init(
        dsn=settings.dsn,
        environment=settings.environment,
        release=settings.release,
        sample_rate=settings.sample_rate,
        max_request_body_size="never",  # API request bodies carry recipients and message text
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        trace_propagation_targets=[],  # no sentry-trace headers to Twilio, SendGrid or Meta
        transport=transport,
    )
    sentry_sdk.set_tag("worker_type", worker_type)
    return True
