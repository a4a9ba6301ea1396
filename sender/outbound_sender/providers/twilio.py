"""Twilio Programmable Messaging: POST /2010-04-01/Accounts/{AccountSid}/Messages.json.

Form-encoded, HTTP Basic (AccountSid:AuthToken), PascalCase field names. 201 answers the Message
resource whose `sid` (SM…/MM…) we store. Errors are `{"code", "message", "more_info", "status"}`;
the code decides the normalized error (docs/providers.md, "Normalized errors"). Our message id travels in
the StatusCallback URL (`?outbound_id=`), so the status callback finds the message even before the
SM sid was recorded.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import ProviderError
from outbound_sender.providers import http
from outbound_sender.providers.base import SendResult
from outbound_sender.providers.http import P, R, T
from outbound_sender.providers.settings import AccountSettings, read_secret_files, secret

LABEL = "Twilio"
log = logging.getLogger(f"provider.{LABEL}")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
STATUS_CALLBACK_PATH = "/twilio/status"

# code -> (normalized, kind, retry hint seconds). Sync codes come in the POST's 4xx answer, async
# ones (30xxx) only in a status callback's ErrorCode; one table serves both.
CODES: dict[int, http.Classified] = {
    21211: (ErrorCode.INVALID_PHONE_NUMBER, P, None),
    21614: (ErrorCode.INVALID_PHONE_NUMBER, P, None),
    21610: (ErrorCode.RECIPIENT_UNSUBSCRIBED, P, None),
    21408: (ErrorCode.PERMANENT_ERROR, P, None),
    21608: (ErrorCode.PERMANENT_ERROR, P, None),
    21602: (ErrorCode.PERMANENT_ERROR, P, None),
    21603: (ErrorCode.PERMANENT_ERROR, P, None),
    21604: (ErrorCode.PERMANENT_ERROR, P, None),
    21611: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 60.0),
    20003: (ErrorCode.AUTH_FAILED, P, None),
    20005: (ErrorCode.ACCOUNT_SUSPENDED, P, None),
    10001: (ErrorCode.ACCOUNT_SUSPENDED, P, None),
    30002: (ErrorCode.ACCOUNT_SUSPENDED, P, None),
    20429: (ErrorCode.RATE_LIMIT_EXCEEDED, R, None),
    30001: (ErrorCode.RATE_LIMIT_EXCEEDED, R, None),
    30003: (ErrorCode.TEMPORARY_ERROR, T, 300.0),
    30005: (ErrorCode.INVALID_PHONE_NUMBER, P, None),
    30006: (ErrorCode.INVALID_PHONE_NUMBER, P, None),
    30007: (ErrorCode.PERMANENT_ERROR, P, None),
    30008: (ErrorCode.TEMPORARY_ERROR, T, None),
    63016: (ErrorCode.TEMPLATE_NOT_APPROVED, P, None),
}


# Answers about one recipient (invalid, unreachable, unsubscribed), not about Twilio's health.
RECIPIENT_CODES = frozenset({21211, 21614, 21610, 30003, 30005, 30006})


class TwilioSettings(AccountSettings):
    """Twilio Programmable Messaging (SMS)."""

    model_config = SettingsConfigDict(env_prefix="TWILIO_", extra="ignore")

    account_sid: str | None = Field(None, pattern=r"^AC[0-9a-fA-F]{32}$")
    account_sid_file: Path | None = Field(None, description="Mounted secret holding the account SID.")
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = Field(None, description="Mounted secret holding the auth token.")
    messaging_service_sid: str | None = Field(
        None, pattern=r"^MG[0-9a-fA-F]{32}$", description="Preferred over From: Twilio picks the sender."
    )
    from_number: str | None = Field(None, description="E.164 sender when no Messaging Service is used.")
    base_url: str = Field("https://api.twilio.com", description="Real API, a sandbox or a mock.")
    status_callback: bool = Field(True, description="Ask Twilio for delivery callbacks (StatusCallback).")

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return read_secret_files(data, ("account_sid", "auth_token"))


def classify(code: int | None, http_status: int | None) -> http.Classified:
    """Normalized code, kind and hint of a Twilio error code (or of the HTTP status alone)."""
    if code is not None and code in CODES:
        return CODES[code]
    return http.by_status(http_status)


def _error_fields(body: object, fallback: str) -> tuple[int | None, str]:
    if not isinstance(body, dict):
        return None, fallback
    code = body.get("code")
    text = body.get("message") or body.get("detail") or body.get("title") or fallback
    return (code if isinstance(code, int) else None), str(text)


def normalize(response: httpx.Response) -> ProviderError:
    """The ProviderError of a non-2xx answer to the Messages POST."""
    code, text = _error_fields(http.json_body(response), response.text[:500])
    normalized, kind, hint = classify(code, response.status_code)
    hint = http.retry_after(response.headers) or hint
    raw = str(code) if code is not None else None
    status = response.status_code
    recipient = code in RECIPIENT_CODES
    return http.error(
        kind, normalized, text, provider_code=raw, http_status=status, retry_after=hint, about_recipient=recipient
    )


def form(settings: TwilioSettings, message: OutboundMessage, callback_base: str | None) -> dict[str, str]:
    """The Messages.json form fields for one message."""
    fields = {"To": message.to_recipient}
    if settings.messaging_service_sid:
        fields["MessagingServiceSid"] = settings.messaging_service_sid
    elif settings.from_number:
        fields["From"] = settings.from_number
    if message.template_code and CONTENT_SID.match(message.template_code):
        fields["ContentSid"] = message.template_code
        if message.template_params:
            fields["ContentVariables"] = json.dumps(message.template_params, separators=(",", ":"))
    elif message.body is not None:
        fields["Body"] = message.body
    if callback_base and settings.status_callback:
        query = urlencode({"outbound_id": message.id})
        fields["StatusCallback"] = f"{callback_base.rstrip('/')}{STATUS_CALLBACK_PATH}?{query}"
    return fields


class TwilioProvider:
    """Sends SMS through Twilio's 2010-04-01 Messages API."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: TwilioSettings,
        *,
        callback_base: str | None = None,
        ambiguous_retry: float = 30.0,
        name: str = "twilio",
    ) -> None:
        if not settings.account_sid or settings.auth_token is None:
            raise ValueError("Twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or _FILE)")
        if not (settings.messaging_service_sid or settings.from_number):
            raise ValueError("Twilio needs TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER")
        self._client = client
        self._settings = settings
        self._auth = httpx.BasicAuth(settings.account_sid, secret(settings.auth_token))
        base = settings.base_url.rstrip("/")
        self._url = f"{base}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        self._callback_base = callback_base
        self._ambiguous_retry = ambiguous_retry
        self.name = name
        self.channels = frozenset({Channel.SMS})

    async def send(self, message: OutboundMessage) -> SendResult:
        data = form(self._settings, message, self._callback_base)
        request = self._client.build_request("POST", self._url, data=data)
        try:
            response = await http.send(
                self._client, request, label=LABEL, ambiguous_retry=self._ambiguous_retry, auth=self._auth
            )
            if response.status_code in (200, 201):
                body = http.json_body(response) or {}
                return SendResult(body.get("sid"), response.status_code, body.get("status"))
            raise normalize(response)
        except ProviderError as error:
            http.log_error(log, LABEL, error, message.id)
            raise

    async def aclose(self) -> None:
        await self._client.aclose()


def credentials_probe(settings: TwilioSettings) -> http.Probe:
    """`outbound check-provider`'s read-only call: the account, which must be active."""
    url = f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/{settings.account_sid}.json"
    return http.Probe(url, {}, httpx.BasicAuth(settings.account_sid or "", secret(settings.auth_token)))


def credentials_verdict(body: dict[str, Any]) -> http.Verdict:
    if body.get("status") != "active":
        return http.Verdict(False, ErrorCode.ACCOUNT_SUSPENDED.value, f"account status {body.get('status')!r}")
    return http.Verdict(True, "OK", f"account {body.get('friendly_name', '')!r} is active")
