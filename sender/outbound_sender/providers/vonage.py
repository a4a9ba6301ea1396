"""Vonage SMS API: POST https://rest.nexmo.com/sms/json, the SMS backup provider.

Form-encoded fields, kebab-case names. The account authenticates with `api_key` plus either
`api_secret` or a signature (`timestamp` + `sig`, made with the account's signature secret: never
both, Vonage refuses that with status 32). The answer is HTTP 200 whether or not the message was
taken: each part of the message (a long text is split) carries its own `status`, "0" for accepted,
another code for a refusal (docs/providers.md, "Vonage SMS"). Our message id travels as
`client-ref`, which every delivery receipt of the message repeats; with a public webhook URL the
receipts are asked for per message (`callback`), else they go where the account's dashboard says.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import AmbiguousSendError, PermanentError, ProviderError
from outbound_sender.providers import http
from outbound_sender.providers.base import SendResult
from outbound_sender.providers.http import P, R, T
from outbound_sender.providers.settings import AccountSettings, read_secret_files, secret

LABEL = "Vonage"
log = logging.getLogger(f"provider.{LABEL}")
DLR_PATH = "/vonage/dlr"
SignatureMethod = Literal["md5hash", "md5", "sha1", "sha256", "sha512"]


class VonageSettings(AccountSettings):
    """Vonage SMS API (SMS)."""

    model_config = SettingsConfigDict(env_prefix="VONAGE_", extra="ignore")

    priority: int = Field(20, description="Failover order inside the channel: after Twilio (10) by default.")
    api_key: str | None = Field(None, min_length=8, max_length=8, description="The account's API key.")
    api_key_file: Path | None = Field(None, description="Mounted secret holding the API key.")
    api_secret: SecretStr | None = Field(None, description="Sent with each request unless a signature secret is set.")
    api_secret_file: Path | None = None
    signature_secret: SecretStr | None = Field(
        None, description="Signs our requests (instead of the API secret) and verifies the delivery receipts."
    )
    signature_secret_file: Path | None = None
    signature_method: SignatureMethod = Field(
        "md5hash", description="The account's signature method (dashboard, API settings)."
    )
    from_number: str | None = Field(None, description="Sender: an E.164 number without '+' or an alphanumeric id.")
    base_url: str = Field("https://rest.nexmo.com", description="Real API, a sandbox or a mock.")

    @model_validator(mode="before")
    @classmethod
    def _files(cls, data: Any) -> Any:
        return read_secret_files(data, ("api_key", "api_secret", "signature_secret"))


# ---- the signature (requests we send, receipts we receive) ------------------------------------
def signature(secret_value: str, params: Mapping[str, str], method: SignatureMethod) -> str:
    """Vonage's signature of a parameter set (`sig` excluded): every parameter sorted by name as
    `&name=value`, with `&` and `=` in values replaced by `_`; md5hash is the MD5 of that string
    followed by the secret, the other methods an HMAC keyed by the secret. Lower-case hex."""
    data = "".join(
        f"&{name}={value.replace('&', '_').replace('=', '_')}"
        for name, value in sorted(params.items())
        if name != "sig"
    )
    if method == "md5hash":
        return hashlib.md5((data + secret_value).encode()).hexdigest()
    return hmac.new(secret_value.encode(), data.encode(), method).hexdigest()


# ---- the error table --------------------------------------------------------------------------
# Submission status (per message part, in a 200 answer) -> (normalized, kind, retry hint seconds).
STATUS: dict[int, http.Classified] = {
    1: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 1.0),  # throttled: over the account's throughput
    2: (ErrorCode.PERMANENT_ERROR, P, None),  # missing parameter
    3: (ErrorCode.PERMANENT_ERROR, P, None),  # invalid parameter
    4: (ErrorCode.AUTH_FAILED, P, None),  # invalid credentials
    5: (ErrorCode.TEMPORARY_ERROR, T, None),  # internal error
    6: (ErrorCode.INVALID_PHONE_NUMBER, P, None),  # invalid message: unrecognized number prefix
    7: (ErrorCode.RECIPIENT_UNSUBSCRIBED, P, None),  # number barred
    8: (ErrorCode.ACCOUNT_SUSPENDED, P, None),  # partner account barred
    9: (ErrorCode.QUOTA_EXCEEDED, P, None),  # partner quota violation: no credit left
    10: (ErrorCode.RATE_LIMIT_EXCEEDED, R, 1.0),  # too many existing binds
    11: (ErrorCode.ACCOUNT_SUSPENDED, P, None),  # account not enabled for HTTP
    12: (ErrorCode.PERMANENT_ERROR, P, None),  # message too long
    14: (ErrorCode.AUTH_FAILED, P, None),  # invalid signature
    15: (ErrorCode.PERMANENT_ERROR, P, None),  # invalid sender address
    22: (ErrorCode.PERMANENT_ERROR, P, None),  # invalid network code
    23: (ErrorCode.PERMANENT_ERROR, P, None),  # invalid callback URL
    29: (ErrorCode.PERMANENT_ERROR, P, None),  # non-whitelisted destination (demo account)
    32: (ErrorCode.AUTH_FAILED, P, None),  # signature and API secret both given
    33: (ErrorCode.INVALID_PHONE_NUMBER, P, None),  # number de-activated
}
RECIPIENT_STATUS = frozenset({6, 7, 33})

# Delivery receipt `err-code` -> (normalized, kind). 0 is delivered; the others come with a
# failed, rejected or expired receipt.
DLR_CODES: dict[int, tuple[ErrorCode, http.ErrorKind]] = {
    1: (ErrorCode.TEMPORARY_ERROR, T),  # unknown
    2: (ErrorCode.TEMPORARY_ERROR, T),  # absent subscriber, temporary
    3: (ErrorCode.INVALID_PHONE_NUMBER, P),  # absent subscriber, permanent
    4: (ErrorCode.RECIPIENT_UNSUBSCRIBED, P),  # call barred by user
    5: (ErrorCode.PERMANENT_ERROR, P),  # portability error
    6: (ErrorCode.PERMANENT_ERROR, P),  # anti-spam rejection
    7: (ErrorCode.TEMPORARY_ERROR, T),  # handset busy
    8: (ErrorCode.TEMPORARY_ERROR, T),  # network error
    9: (ErrorCode.INVALID_PHONE_NUMBER, P),  # illegal number
    10: (ErrorCode.PERMANENT_ERROR, P),  # illegal message
    11: (ErrorCode.INVALID_PHONE_NUMBER, P),  # unroutable
    12: (ErrorCode.INVALID_PHONE_NUMBER, P),  # destination unreachable
    13: (ErrorCode.PERMANENT_ERROR, P),  # subscriber age restriction
    14: (ErrorCode.PERMANENT_ERROR, P),  # number blocked by carrier
    15: (ErrorCode.PERMANENT_ERROR, P),  # pre-paid insufficient funds
    16: (ErrorCode.PERMANENT_ERROR, P),  # gateway quota exceeded
    50: (ErrorCode.PERMANENT_ERROR, P),  # entity filter
    51: (ErrorCode.PERMANENT_ERROR, P),  # header filter
    52: (ErrorCode.PERMANENT_ERROR, P),  # content filter
    53: (ErrorCode.RECIPIENT_UNSUBSCRIBED, P),  # consent filter
    54: (ErrorCode.PERMANENT_ERROR, P),  # regulation error
    99: (ErrorCode.TEMPORARY_ERROR, T),  # general error
}


def classify(status: int | None, http_status: int | None) -> http.Classified:
    """Normalized code, kind and hint of a submission status (or of the HTTP status alone)."""
    if status is not None and status in STATUS:
        return STATUS[status]
    return http.by_status(http_status)


def dlr_error(code: int) -> ErrorCode:
    """The normalized error of a receipt's err-code (unknown codes: a permanent error)."""
    return DLR_CODES.get(code, (ErrorCode.PERMANENT_ERROR, P))[0]


def _parts(body: object) -> list[dict[str, Any]]:
    messages = body.get("messages") if isinstance(body, dict) else None
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _status(part: Mapping[str, Any]) -> int | None:
    try:
        return int(str(part.get("status")))
    except ValueError:
        return None


def _error(
    status: int | None, http_status: int, text: str, headers: Mapping[str, str], partial: bool = False
) -> ProviderError:
    normalized, kind, hint = classify(status, http_status)
    raw = str(status) if status is not None else str(http_status)
    if partial:  # some parts went out: a retry would send them twice
        text = f"{text} (after other parts of the message were accepted)"
        return PermanentError(normalized, text, provider_code=raw, http_status=http_status)
    hint = http.retry_after(headers) or hint
    recipient = status in RECIPIENT_STATUS
    return http.error(
        kind, normalized, text, provider_code=raw, http_status=http_status, retry_after=hint, about_recipient=recipient
    )


def normalize(response: httpx.Response) -> ProviderError:
    """The ProviderError of an answer that did not accept the message: a non-2xx answer, or a 200
    whose first refused part names the status."""
    parts = _parts(http.json_body(response))
    refused = next((p for p in parts if _status(p) != 0), None)
    if refused is None:
        return _error(None, response.status_code, response.text[:500] or "no answer body", response.headers)
    text = str(refused.get("error-text") or f"status {refused.get('status')}")
    partial = any(_status(p) == 0 for p in parts)
    return _error(_status(refused), response.status_code, text, response.headers, partial)


# ---- the request ------------------------------------------------------------------------------
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "^{}\\[~]|€\f"
GSM = frozenset(GSM_BASIC + GSM_EXTENSION)


def text_type(text: str) -> Literal["text", "unicode"]:
    """`text` when the GSM 03.38 alphabet holds every character, else `unicode`."""
    return "text" if set(text) <= GSM else "unicode"


def form(
    settings: VonageSettings, message: OutboundMessage, callback_base: str | None, now: float | None = None
) -> dict[str, str]:
    """The form fields of one message, authenticated."""
    text = message.body or ""
    fields = {
        "api_key": settings.api_key or "",
        "from": settings.from_number or "",
        "to": message.to_recipient.removeprefix("+"),
        "text": text,
        "type": text_type(text),
        "client-ref": str(message.id),
    }
    if callback_base:
        fields["callback"] = f"{callback_base.rstrip('/')}{DLR_PATH}"
    return authenticate(settings, fields, now)


def authenticate(settings: VonageSettings, fields: dict[str, str], now: float | None = None) -> dict[str, str]:
    """The fields with the API secret, or signed with the signature secret when there is one."""
    if settings.signature_secret is None:
        return {**fields, "api_secret": secret(settings.api_secret)}
    signed = {**fields, "timestamp": str(int(time.time() if now is None else now))}
    signed["sig"] = signature(secret(settings.signature_secret), signed, settings.signature_method)
    return signed


class VonageProvider:
    """Sends SMS through the Vonage SMS API."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: VonageSettings,
        *,
        callback_base: str | None = None,
        ambiguous_retry: float = 30.0,
        name: str = "vonage",
    ) -> None:
        if not settings.api_key or (settings.api_secret is None and settings.signature_secret is None):
            raise ValueError("Vonage needs VONAGE_API_KEY and VONAGE_API_SECRET or VONAGE_SIGNATURE_SECRET (or _FILE)")
        if not settings.from_number:
            raise ValueError("Vonage needs VONAGE_FROM_NUMBER")
        self._client = client
        self._settings = settings
        self._url = f"{settings.base_url.rstrip('/')}/sms/json"
        self._callback_base = callback_base
        self._ambiguous_retry = ambiguous_retry
        self.name = name
        self.channels = frozenset({Channel.SMS})

    async def send(self, message: OutboundMessage) -> SendResult:
        data = form(self._settings, message, self._callback_base)
        request = self._client.build_request("POST", self._url, data=data)
        try:
            response = await http.send(self._client, request, label=LABEL, ambiguous_retry=self._ambiguous_retry)
            parts = _parts(http.json_body(response)) if response.status_code == 200 else []
            if parts and all(_status(p) == 0 for p in parts):
                return SendResult(str(parts[0].get("message-id") or "") or None, response.status_code, "0")
            if response.status_code == 200 and not parts:  # taken or not: nothing says
                raise AmbiguousSendError(
                    ErrorCode.TEMPORARY_ERROR,
                    f"{LABEL}: a 200 answer without a message status; the message may have been accepted",
                    retry_after=self._ambiguous_retry or None,
                    http_status=200,
                )
            raise normalize(response)
        except ProviderError as error:
            http.log_error(log, LABEL, error, message.id)
            raise

    async def aclose(self) -> None:
        await self._client.aclose()


def credentials_probe(settings: VonageSettings) -> http.Probe:
    """`outbound check-provider`'s read-only call: the account balance (Account API), authenticated
    by query parameters as the send is (the printed URL leaves them out)."""
    url = f"{settings.base_url.rstrip('/')}/account/get-balance"
    return http.Probe(url, {}, params=authenticate(settings, {"api_key": settings.api_key or ""}))


def credentials_verdict(body: dict[str, Any]) -> http.Verdict:
    value = body.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return http.Verdict(False, ErrorCode.PERMANENT_ERROR.value, "the balance answer has no numeric value")
    if value <= 0:
        return http.Verdict(False, ErrorCode.QUOTA_EXCEEDED.value, f"balance {value:g}: no credit to send")
    return http.Verdict(True, "OK", f"balance {value:g}")
