"""Sentry error tracking: on with SENTRY_DSN, off (nothing initialised, nothing sent) without it.

`setup_sentry(worker_type=...)` is called once per process after `setup_logging`. Error-level log
records become Sentry events (the logging integration); INFO and up become breadcrumbs. Every event
carries the runbook's tags:
    correlation_id, channel, error_code   from the record's `extra={"fields": {...}}`
                                           (correlationId/correlation_id, channel, errorCode)
    worker_type                           the process role given at set-up
Nothing secret leaves the process (before_send and before_breadcrumb, over the whole event):
  * frame local variables are never sent (include_local_variables=False): the request scope of a
    /v1 call holds the caller's API key, a webhook handler's frames the provider's secret;
  * values under a credential-like name (Authorization, Cookie, X-Hub-Signature-256, *token*,
    *secret*, *password*, *api_key*, ...) and recipient fields (to, phone, email) become [Filtered],
    in request headers, data, extra, contexts and breadcrumbs alike;
  * in every string: API keys keep only their public id (obk_<id>_[Filtered]), Bearer credentials,
    sha256= signatures, URL passwords and credential query parameters are filtered, the values of
    the process's secret settings (environment variables named like a credential, and the files
    their *_FILE variables name) are replaced, and recipients are masked with logs.mask;
  * request bodies are never attached and PII collection stays at the SDK's default (off).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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


FILTERED = "[Filtered]"
# A key naming a credential or a recipient: its value is dropped whatever it holds.
_SECRET_KEY = re.compile(
    r"auth|cookie|secret|token|passw|signature|api[_-]?key|credential|private[_-]?key|bodysha256|"
    r"database_url|redis_url|^dsn$",
    re.IGNORECASE,
)
_RECIPIENT_KEY = re.compile(r"^(to|recipient|recipients|phone|phone_number|email|e_mail|wa_id|from)$", re.IGNORECASE)
# Credentials inside free text.
_API_KEY = re.compile(r"\bobk_([a-z0-9]{12})_[A-Za-z0-9_-]+")
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_SIGNATURE = re.compile(r"\b(sha1|sha256)=[0-9A-Za-z+/=]+", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+):[^@\s/]+@")
_SECRET_PARAM = re.compile(
    r"([?&;\s]?[\w.-]*(?:token|secret|signature|password|api[_-]?key)[\w.-]*=)[^&\s]+", re.IGNORECASE
)
_SECRET_ENV = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|AUTH|PRIVATE_KEY|DATABASE_URL|REDIS_URL", re.IGNORECASE)
_MIN_SECRET_LENGTH = 6  # shorter values ("true", a port) would rewrite ordinary text


def secret_values(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The values of this process's secret settings: environment variables named like a credential,
    the contents of the files their *_FILE variables point at, and the passwords inside URLs."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in environ.items():
        if not _SECRET_ENV.search(name) or name.startswith("SENTRY_"):
            continue
        secret = value
        if name.endswith("_FILE"):
            try:
                secret = Path(value).read_text().strip()
            except (OSError, UnicodeDecodeError):
                continue
        found.add(secret)
        password = _url_password(secret)
        if password:
            found.add(password)
    return frozenset(v for v in found if len(v) >= _MIN_SECRET_LENGTH)


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        password = urlsplit(value).password
    except ValueError:
        return None
    return unquote(password) if password else None


class Scrubber:
    """Removes credentials and recipients from a JSON-like event (see the module's docstring)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, FILTERED)
        text = _API_KEY.sub(lambda m: f"obk_{m.group(1)}_{FILTERED}", text)
        text = _BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", text)
        text = _SIGNATURE.sub(lambda m: f"{m.group(1)}={FILTERED}", text)
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{FILTERED}@", text)
        text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{FILTERED}", text)
        return mask(text)

    def __call__(self, value: Any, key: str | None = None) -> Any:
        if key is not None and (_SECRET_KEY.search(key) or _RECIPIENT_KEY.match(key)) and value not in (None, ""):
            return FILTERED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, dict):
            return {k: self(item, k if isinstance(k, str) else None) for k, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._pair(item) for item in value]
        return value

    def _pair(self, item: Any) -> Any:
        """A header list holds [name, value] pairs: the name decides as a key would."""
        if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):
            return [item[0], self(item[1], item[0])]
        return self(item)


_DEFAULT = Scrubber()


def scrub(value: Any, scrubber: Scrubber = _DEFAULT) -> Any:
    """Remove credentials and mask recipients in every string of a JSON-like structure."""
    return scrubber(value)


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


def before_send(event: Event, hint: Hint, scrubber: Scrubber = _DEFAULT) -> Event | None:
    """Tag from the log fields, group handleFailure events by channel and code, scrub recipients."""
    tags = tags_from_fields(_record_fields(event, hint))
    event.setdefault("tags", {}).update(tags)
    message = event.get("logentry", {}).get("message") or ""
    if str(message).startswith("handleFailure") and "error_code" in tags:
        event["fingerprint"] = ["handleFailure", tags.get("channel", ""), tags["error_code"]]
    # SENTRY_RELEASE and SENTRY_ENVIRONMENT are ours, not user data: a release named the usual way,
    # package@version, would otherwise be masked as an e-mail address and attributed to nothing.
    configured = {key: event[key] for key in ("release", "environment") if key in event}
    scrubbed: Event = scrub(event, scrubber)
    scrubbed.update(configured)  # type: ignore[typeddict-item]
    return scrubbed


def before_breadcrumb(crumb: Breadcrumb, _hint: BreadcrumbHint, scrubber: Scrubber = _DEFAULT) -> Breadcrumb | None:
    scrubbed: Breadcrumb = scrub(crumb, scrubber)
    return scrubbed


def setup_sentry(
    worker_type: str,
    settings: SentrySettings | None = None,
    *,
    transport: Transport | type[Transport] | None = None,
    secrets: Iterable[str] = (),
) -> bool:
    """Initialise Sentry when a DSN is configured; return whether it is on. The values of the
    process's secret settings (secret_values()) and `secrets` are never sent."""
    settings = settings or SentrySettings()
    if not settings.dsn:
        return False
    scrubber = Scrubber([*secret_values(), *secrets])
    sentry_sdk.init(
        dsn=settings.dsn,
        environment=settings.environment,
        release=settings.release,
        sample_rate=settings.sample_rate,
        max_request_body_size="never",  # API request bodies carry recipients and message text
        include_local_variables=False,  # frames hold API keys, provider secrets and recipients
        before_send=lambda event, hint: before_send(event, hint, scrubber),
        before_breadcrumb=lambda crumb, hint: before_breadcrumb(crumb, hint, scrubber),
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        trace_propagation_targets=[],  # no sentry-trace headers to the providers
        transport=transport,
    )
    sentry_sdk.set_tag("worker_type", worker_type)
    return True
