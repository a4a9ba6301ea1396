"""WhatsApp Cloud API: POST /{Version}/{Phone-Number-ID}/messages.

JSON, `Authorization: Bearer <token>`. Text messages send `text.body`; templates send
`template{name, language{code, policy}, components}`. Our message id goes in
`biz_opaque_callback_data`, which the status webhook echoes. 200 answers
`{"messages": [{"id": "wamid…"}]}`; errors are Graph errors `{"error": {"code", "message",
"error_data": {"details"}, "is_transient", …}}`, keyed on `code` (docs/providers.md, "Normalized errors").
WhatsApp sends no Retry-After: throttle hints come from the code (and X-Business-Use-Case-Usage).
"""

from __future__ import annotations

import json
import logging
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

LABEL = "WhatsApp"
log = logging.getLogger(f"provider.{LABEL}")
TEMPLATE_CODES = (132000, 132001, 132005, 132007, 132012, 132015, 132016)
AUTH_CODES = (0, 3, 10, 190, *range(200, 300))
# Answers about one recipient, not about the provider: per-user marketing limit, undeliverable,
# 24 h window closed, invalid number, unsubscribed. The circuit breaker counts them as successes.
RECIPIENT_CODES = frozenset({131049, 131026, 131047, 131009, 131050})

CODES: dict[int, http.Classified] = {
    130429: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 1.0),
    131056: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 6.0),
    4: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 60.0),
    17: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 60.0),
    80007: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 60.0),
    131048: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 3600.0),
    131049: (ErrorCode.TEMPORARY_ERROR, T, 86_400.0),
    131047: (ErrorCode.PERMANENT_ERROR, P, None),
    131026: (ErrorCode.PERMANENT_ERROR, P, None),
    131050: (ErrorCode.RECIPIENT_UNSUBSCRIBED, P, None),
    100: (ErrorCode.PERMANENT_ERROR, P, None),
    131008: (ErrorCode.PERMANENT_ERROR, P, None),
    131009: (ErrorCode.PERMANENT_ERROR, P, None),
    368: (ErrorCode.ACCOUNT_SUSPENDED, P, None),
    131031: (ErrorCode.ACCOUNT_SUSPENDED, P, None),
    131042: (ErrorCode.ACCOUNT_SUSPENDED, P, None),
    1: (ErrorCode.TEMPORARY_ERROR, T, None),
    2: (ErrorCode.TEMPORARY_ERROR, T, None),
    131000: (ErrorCode.TEMPORARY_ERROR, T, None),
    131016: (ErrorCode.TEMPORARY_ERROR, T, None),
    **dict.fromkeys(TEMPLATE_CODES, (ErrorCode.TEMPLATE_NOT_APPROVED, P, None)),
    **dict.fromkeys(AUTH_CODES, (ErrorCode.AUTH_FAILED, P, None)),
}


class WhatsAppSettings(AccountSettings):
    """WhatsApp Cloud API (Graph API)."""

    model_config = SettingsConfigDict(env_prefix="WHATSAPP_", extra="ignore")

    access_token: SecretStr | None = None
    access_token_file: Path | None = None
    phone_number_id: str | None = Field(None, pattern=r"^\d+$")
    api_version: str = Field("v23.0", pattern=r"^v\d+\.\d+$", description="Graph API version in the path.")
    base_url: str = "https://graph.facebook.com"
    default_language: str = Field("en_US", description="Template language when the message has none.")
    app_secret: SecretStr | None = Field(None, description="Signs webhooks (X-Hub-Signature-256).")
    app_secret_file: Path | None = None
    verify_token: SecretStr | None = Field(None, description="Echoed in the GET verification handshake.")
    verify_token_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return read_secret_files(data, ("access_token", "app_secret", "verify_token"))


def _names_recipient(details: str) -> bool:
    lowered = details.lower()
    return "'to'" in lowered or "phone number" in lowered or "parameter to" in lowered


def classify(code: int | None, http_status: int | None, details: str = "", transient: bool = False) -> http.Classified:
    """Normalized code, kind and hint of a Graph error code."""
    if code == 131009 and _names_recipient(details):
        return ErrorCode.INVALID_PHONE_NUMBER, P, None
    if code is not None and code in CODES:
        return CODES[code]
    if http_status == 429:
        return ErrorCode.RATE_LIMIT_EXCEEDED, R, 60.0
    if transient or http_status is None or http_status >= 500:
        return ErrorCode.TEMPORARY_ERROR, T, None
    return ErrorCode.PERMANENT_ERROR, P, None


def usage_hint(headers: httpx.Headers) -> float | None:
    """estimated_time_to_regain_access (minutes) from X-Business-Use-Case-Usage, in seconds."""
    raw = headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
        minutes = [
            float(entry.get("estimated_time_to_regain_access") or 0) for entries in usage.values() for entry in entries
        ]
    except (ValueError, AttributeError, TypeError):
        return None
    longest = max(minutes, default=0.0)
    return longest * 60 if longest > 0 else None


def _graph_error(body: object) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    return dict(error) if isinstance(error, dict) else {}


def normalize(response: httpx.Response) -> ProviderError:
    error = _graph_error(http.json_body(response))
    code = error.get("code") if isinstance(error.get("code"), int) else None
    data = error.get("error_data")
    details = str(data.get("details") or "") if isinstance(data, dict) else ""
    text = str(error.get("message") or response.text[:500] or f"HTTP {response.status_code}")
    if details:
        text = f"{text}: {details}"
    normalized, kind, hint = classify(code, response.status_code, details, error.get("is_transient") is True)
    raw = str(code) if code is not None else None
    status = response.status_code
    if kind == R:
        hint = usage_hint(response.headers) or hint
    recipient = code in RECIPIENT_CODES
    return http.error(
        kind, normalized, text, provider_code=raw, http_status=status, retry_after=hint, about_recipient=recipient
    )


def _text_parameters(values: list[Any]) -> list[dict[str, str]]:
    return [{"type": "text", "text": str(value)} for value in values]


def components(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Template components from template_params.

    {"components": [...]} is passed through as Graph components; otherwise "header" / "body" lists
    are positional text parameters ({{1}}, {{2}}…), and any other keys are named body parameters.
    """
    if isinstance(params.get("components"), list):
        return list(params["components"])
    result: list[dict[str, Any]] = []
    if isinstance(params.get("header"), list):
        result.append({"type": "header", "parameters": _text_parameters(params["header"])})
    body = _text_parameters(params["body"]) if isinstance(params.get("body"), list) else []
    named = {k: v for k, v in params.items() if k not in ("header", "body")}
    body += [{"type": "text", "parameter_name": k, "text": str(v)} for k, v in named.items()]
    if body:
        result.append({"type": "body", "parameters": body})
    return result


def payload(settings: WhatsAppSettings, message: OutboundMessage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to_recipient,
        "biz_opaque_callback_data": str(message.id),
    }
    if message.template_code:
        language = {"code": message.template_language or settings.default_language, "policy": "deterministic"}
        template: dict[str, Any] = {"name": message.template_code, "language": language}
        parts = components(message.template_params)
        if parts:
            template["components"] = parts
        body.update(type="template", template=template)
    else:
        body.update(type="text", text={"body": message.body or ""})
    return body


class WhatsAppProvider:
    """Sends WhatsApp messages through the Cloud API."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: WhatsAppSettings,
        *,
        ambiguous_retry: float = 30.0,
        name: str = "whatsapp",
    ) -> None:
        if settings.access_token is None or not settings.phone_number_id:
            raise ValueError("WhatsApp needs WHATSAPP_ACCESS_TOKEN (or _FILE) and WHATSAPP_PHONE_NUMBER_ID")
        self._client = client
        self._settings = settings
        base = settings.base_url.rstrip("/")
        self._url = f"{base}/{settings.api_version}/{settings.phone_number_id}/messages"
        self._headers = {"Authorization": f"Bearer {secret(settings.access_token)}"}
        self._ambiguous_retry = ambiguous_retry
        self.name = name
        self.channels = frozenset({Channel.WHATSAPP})

    async def send(self, message: OutboundMessage) -> SendResult:
        body = payload(self._settings, message)
        request = self._client.build_request("POST", self._url, json=body, headers=self._headers)
        try:
            response = await http.send(self._client, request, label=LABEL, ambiguous_retry=self._ambiguous_retry)
            if response.status_code == 200:
                return _result(response)
            raise normalize(response)
        except ProviderError as error:
            http.log_error(log, LABEL, error, message.id)
            raise

    async def aclose(self) -> None:
        await self._client.aclose()


def _result(response: httpx.Response) -> SendResult:
    body = http.json_body(response) or {}
    messages = body.get("messages") if isinstance(body, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else {}
    return SendResult(first.get("id"), response.status_code, first.get("message_status", "accepted"))


def credentials_probe(settings: WhatsAppSettings) -> http.Probe:
    """`outbound check-provider`'s read-only call: the sending phone number, which must be readable."""
    url = f"{settings.base_url.rstrip('/')}/{settings.api_version}/{settings.phone_number_id}"
    return http.Probe(url, {"Authorization": f"Bearer {secret(settings.access_token)}"})


def credentials_verdict(body: dict[str, Any]) -> http.Verdict:
    detail = f"number {body.get('display_phone_number')} quality {body.get('quality_rating')}"
    return http.Verdict(True, "OK", detail)
