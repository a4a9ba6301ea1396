"""What the three provider clients share: the pooled client, transport failures, retry hints, logs.

Transport failures split by whether the request can have reached the provider:

    ConnectError, ConnectTimeout, PoolTimeout      never left us     -> TemporaryError (safe retry)
    WriteError/Timeout, ReadError/Timeout,         may have been     -> AmbiguousSendError: retried
    RemoteProtocolError (connection dropped)       processed            like a temporary error, but
                                                                        counted, flagged on the
                                                                        attempt, and not before
                                                                        `ambiguous_retry_seconds`
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx

from outbound_sender.domain import ErrorCode
from outbound_sender.errors import (
    AmbiguousSendError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TemporaryError,
)


class ErrorKind(Enum):
    """What an error table says a failed answer means for the message, and so which ProviderError
    it becomes (`error`): a plain string would let a misspelt kind fall through to permanent."""

    PERMANENT = "permanent"  # never retried: FAILED at once
    TEMPORARY = "temporary"  # retried with backoff
    RATELIMIT = "ratelimit"  # retried after the hint: about the account's pace, never one recipient

    @property
    def retryable(self) -> bool:
        return self is not ErrorKind.PERMANENT


P, T, R = ErrorKind.PERMANENT, ErrorKind.TEMPORARY, ErrorKind.RATELIMIT
Classified = tuple[ErrorCode, ErrorKind, float | None]  # an error table's row: normalized, kind, retry hint

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
MAYBE_SENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    label: str,
    ambiguous_retry: float,
    auth: httpx.Auth | None = None,
) -> httpx.Response:
    """Send one request; turn transport failures into the right ProviderError."""
    try:
        return await client.send(request, auth=auth)
    except NOT_SENT as error:
        raise TemporaryError(
            ErrorCode.TEMPORARY_ERROR, f"{label}: connection failed before sending: {error!r}"
        ) from error
    except MAYBE_SENT as error:
        raise AmbiguousSendError(
            ErrorCode.TEMPORARY_ERROR,
            f"{label}: no answer after sending ({type(error).__name__}); the provider may have accepted it",
            retry_after=ambiguous_retry or None,
        ) from error


def by_status(http_status: int | None) -> Classified:
    """An answer without a provider code, by its HTTP status alone: (normalized, kind, hint)."""
    if http_status == 429:
        return ErrorCode.RATE_LIMIT_EXCEEDED, R, None
    if http_status is None or http_status >= 500:
        return ErrorCode.TEMPORARY_ERROR, T, None
    if http_status == 401:
        return ErrorCode.AUTH_FAILED, P, None
    return ErrorCode.PERMANENT_ERROR, P, None


def error(
    kind: ErrorKind,
    code: ErrorCode,
    text: str,
    *,
    provider_code: str | None,
    http_status: int | None,
    retry_after: float | None = None,
    about_recipient: bool = False,
) -> ProviderError:
    """The ProviderError of an error table's kind."""
    raw, status = provider_code, http_status
    if kind is ErrorKind.RATELIMIT:  # about the account's pace, never about one recipient
        return RateLimitedError(code, text, provider_code=raw, retry_after=retry_after, http_status=status)
    if kind is ErrorKind.TEMPORARY:
        return TemporaryError(
            code, text, provider_code=raw, retry_after=retry_after, http_status=status, about_recipient=about_recipient
        )
    return PermanentError(code, text, provider_code=raw, http_status=status, about_recipient=about_recipient)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def rate_limit_reset(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until X-RateLimit-Reset (a Unix time, as some providers send it), at least 1 s once exhausted."""
    value = headers.get("x-ratelimit-reset")
    if not value:
        return None
    try:
        reset = float(value)
    except ValueError:
        return None
    return max(1.0, reset - (time.time() if now is None else now))


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def log_error(logger: logging.Logger, label: str, error: ProviderError, message_id: int | None) -> None:
    """The runbook greps the provider's label and `ERROR`: both are in this line."""
    fields: dict[str, object] = {"provider": label, "errorCode": error.code.value}
    if message_id is not None:
        fields["messageId"] = message_id
    if error.provider_code:
        fields["providerCode"] = error.provider_code
    if error.http_status:
        fields["httpStatus"] = error.http_status
    logger.error(f"{label} API error: {error.message}", extra={"fields": fields})


@dataclass(frozen=True, slots=True)
class Probe:
    """A read-only request that proves credentials and reachability (`outbound check-provider`)."""

    url: str
    headers: dict[str, str]
    auth: httpx.Auth | None = None
    params: dict[str, str] | None = None  # query parameters, credentials among them: never printed


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a provider's answer to its probe says: passed, the normalized result, a detail line."""

    ok: bool
    normalized: str
    detail: str
