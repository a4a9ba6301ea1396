"""SendGrid v3 Mail Send: POST /v3/mail/send.

JSON, `Authorization: Bearer SG…`. Plain messages carry `subject` + `content` (text/plain);
template messages carry `template_id` (d-…) + `personalizations[0].dynamic_template_data`. Our
message id rides in `personalizations[0].custom_args.outbound_id`, which every Event Webhook event
echoes as a top-level key. 202 Accepted (empty body) with `X-Message-Id`; errors are
`{"errors": [{"message", "field", "help"}]}` (docs/providers.md, "Normalized errors").
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import ProviderError
from outbound_sender.providers import http
from outbound_sender.providers.base import SendResult
from outbound_sender.providers.http import P, R, T
from outbound_sender.providers.settings import AccountSettings, read_secret_files, secret

LABEL = "SendGrid"
log = logging.getLogger(f"provider.{LABEL}")
TEMPLATE_ID = re.compile(r"^d-[0-9a-fA-F]{32}$")
SUSPENDED = re.compile(r"\b(disabled|suspended|banned|deactivated)\b", re.IGNORECASE)
OUR_ID = "outbound_id"


class SendGridSettings(AccountSettings):
    """SendGrid v3 Mail Send (e-mail)."""

    model_config = SettingsConfigDict(env_prefix="SENDGRID_", extra="ignore")

    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    from_email: str | None = Field(None, description="A verified Sender Identity of the account.")
    from_name: str | None = None
    base_url: str = Field("https://api.sendgrid.com", description="EU subusers: https://api.eu.sendgrid.com")
    webhook_public_key: SecretStr | None = Field(
        None, description="Signed Event Webhook verification key (base64 DER); unset: events are refused."
    )
    webhook_public_key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return read_secret_files(data, ("api_key", "webhook_public_key"))


def _first_error(body: object, fallback: str) -> tuple[str, str | None]:
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            field = errors[0].get("field")
            return str(errors[0].get("message") or fallback), (str(field) if field else None)
    return fallback, None


def _recipient_field(field: str | None, text: str) -> bool:
    if field and field.startswith("personalizations.") and field.endswith("email"):
        return True
    return field is None and "does not contain a valid address" in text


def classify(status: int, text: str, field: str | None) -> tuple[ErrorCode, http.ErrorKind]:
    """(normalized code, kind) of an error answer."""
    if status == 429:
        return ErrorCode.RATE_LIMIT_EXCEEDED, R
    if status >= 500:
        return ErrorCode.TEMPORARY_ERROR, T
    if status == 401:
        quota = "credits" in text.lower()
        return (ErrorCode.QUOTA_EXCEEDED if quota else ErrorCode.AUTH_FAILED), P
    if status == 403 and SUSPENDED.search(text):
        return ErrorCode.ACCOUNT_SUSPENDED, P
    if status == 400 and _recipient_field(field, text):
        return ErrorCode.INVALID_EMAIL, P
    if status == 400 and field == "template_id":
        return ErrorCode.TEMPLATE_NOT_APPROVED, P
    return ErrorCode.PERMANENT_ERROR, P


def normalize(response: httpx.Response) -> ProviderError:
    status = response.status_code
    text, field = _first_error(http.json_body(response), response.text[:500] or f"HTTP {status}")
    code, kind = classify(status, text, field)
    raw = f"{status}:{field}" if field else str(status)
    hint = http.retry_after(response.headers)
    if kind is R:
        hint = http.rate_limit_reset(response.headers) or hint
    return http.error(kind, code, text, provider_code=raw, http_status=status, retry_after=hint)


def payload(settings: SendGridSettings, message: OutboundMessage) -> dict[str, Any]:
    """The mail/send body for one message (one personalization, one recipient)."""
    personalization: dict[str, Any] = {
        "to": [{"email": message.to_recipient}],
        "custom_args": {OUR_ID: str(message.id)},
    }
    sender: dict[str, str] = {"email": settings.from_email or ""}
    if settings.from_name:
        sender["name"] = settings.from_name
    body: dict[str, Any] = {"personalizations": [personalization], "from": sender}
    if message.subject is not None:
        body["subject"] = message.subject
    if message.template_code:
        body["template_id"] = message.template_code
        if message.template_params:
            personalization["dynamic_template_data"] = dict(message.template_params)
    else:
        body["content"] = [{"type": "text/plain", "value": message.body or ""}]
    if message.correlation_id:
        body["custom_args"] = {"correlation_id": message.correlation_id}
    return body


class SendGridProvider:
    """Sends e-mail through SendGrid's v3 Mail Send API."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: SendGridSettings,
        *,
        ambiguous_retry: float = 30.0,
        name: str = "sendgrid",
    ) -> None:
        if settings.api_key is None or not settings.from_email:
            raise ValueError("SendGrid needs SENDGRID_API_KEY (or _FILE) and SENDGRID_FROM_EMAIL")
        self._client = client
        self._settings = settings
        self._url = settings.base_url.rstrip("/") + "/v3/mail/send"
        self._headers = {"Authorization": f"Bearer {secret(settings.api_key)}"}
        self._ambiguous_retry = ambiguous_retry
        self.name = name
        self.channels = frozenset({Channel.EMAIL})

    async def send(self, message: OutboundMessage) -> SendResult:
        body = payload(self._settings, message)
        request = self._client.build_request("POST", self._url, json=body, headers=self._headers)
        try:
            response = await http.send(self._client, request, label=LABEL, ambiguous_retry=self._ambiguous_retry)
            if response.status_code in (200, 202):
                return SendResult(response.headers.get("x-message-id"), response.status_code, "accepted")
            raise normalize(response)
        except ProviderError as error:
            http.log_error(log, LABEL, error, message.id)
            raise

    async def aclose(self) -> None:
        await self._client.aclose()


def credentials_probe(settings: SendGridSettings) -> http.Probe:
    """`outbound check-provider`'s read-only call: the API key's scopes, which must hold mail.send."""
    url = settings.base_url.rstrip("/") + "/v3/scopes"
    return http.Probe(url, {"Authorization": f"Bearer {secret(settings.api_key)}"})


def credentials_verdict(body: dict[str, Any]) -> http.Verdict:
    if "mail.send" not in (body.get("scopes") or []):
        return http.Verdict(False, ErrorCode.AUTH_FAILED.value, "the API key lacks the mail.send scope")
    return http.Verdict(True, "OK", "API key holds mail.send")
