"""Every row of shared/providers.md's error tables maps to its normalized code, retryability and hint."""

from __future__ import annotations

import time

import httpx
import pytest

from outbound_sender.domain import ErrorCode as E
from outbound_sender.errors import PermanentError, ProviderError, RateLimitedError, TemporaryError
from outbound_sender.providers import http, sendgrid, twilio, vonage, whatsapp
from outbound_sender.providers.http import ErrorKind

PERM, TEMP, RATE = PermanentError, TemporaryError, RateLimitedError


def _twilio(status: int, code: int, headers: dict[str, str] | None = None) -> ProviderError:
    body = {"code": code, "message": f"error {code}", "more_info": "", "status": status}
    return twilio.normalize(httpx.Response(status, json=body, headers=headers))


# Twilio sync codes (section 1): code, HTTP status, normalized, exception type
TWILIO_SYNC = [
    (21211, 400, E.INVALID_PHONE_NUMBER, PERM),
    (21614, 400, E.INVALID_PHONE_NUMBER, PERM),
    (21610, 400, E.RECIPIENT_UNSUBSCRIBED, PERM),
    (21408, 400, E.PERMANENT_ERROR, PERM),
    (21608, 400, E.PERMANENT_ERROR, PERM),
    (21602, 400, E.PERMANENT_ERROR, PERM),
    (21603, 400, E.PERMANENT_ERROR, PERM),
    (21604, 400, E.PERMANENT_ERROR, PERM),
    (21611, 400, E.RATE_LIMIT_EXCEEDED, RATE),
    (20003, 401, E.AUTH_FAILED, PERM),
    (20005, 401, E.ACCOUNT_SUSPENDED, PERM),
    (10001, 400, E.ACCOUNT_SUSPENDED, PERM),
    (20429, 429, E.RATE_LIMIT_EXCEEDED, RATE),
    (20500, 500, E.TEMPORARY_ERROR, TEMP),
    (20503, 503, E.TEMPORARY_ERROR, TEMP),
    (21999, 400, E.PERMANENT_ERROR, PERM),  # "other 400"
]


@pytest.mark.parametrize(("code", "status", "normalized", "kind"), TWILIO_SYNC)
def test_twilio_sync_codes(code: int, status: int, normalized: E, kind: type[ProviderError]) -> None:
    error = _twilio(status, code)
    assert type(error) is kind
    assert error.code is normalized
    assert error.provider_code == str(code)
    assert error.http_status == status


# Twilio async codes (status callbacks' ErrorCode)
TWILIO_ASYNC = [
    (30001, E.RATE_LIMIT_EXCEEDED, True),
    (30002, E.ACCOUNT_SUSPENDED, False),
    (30003, E.TEMPORARY_ERROR, True),
    (30005, E.INVALID_PHONE_NUMBER, False),
    (30006, E.INVALID_PHONE_NUMBER, False),
    (30007, E.PERMANENT_ERROR, False),
    (30008, E.TEMPORARY_ERROR, True),
]


@pytest.mark.parametrize(("code", "normalized", "retryable"), TWILIO_ASYNC)
def test_twilio_async_codes(code: int, normalized: E, retryable: bool) -> None:
    got, kind, _hint = twilio.classify(code, None)
    assert got is normalized
    assert kind.retryable is retryable


def test_twilio_retry_after_header_is_the_hint() -> None:
    assert _twilio(429, 20429, {"Retry-After": "7"}).retry_after == 7.0
    assert _twilio(429, 20429).retry_after is None  # no documented header: plain backoff
    assert _twilio(400, 21611).retry_after == 60.0


def test_twilio_rfc9457_problem_body_is_read() -> None:
    body = {"type": "x", "title": "Bad", "status": 400, "code": 21211, "detail": "bad number"}
    error = twilio.normalize(httpx.Response(400, json=body))
    assert error.code is E.INVALID_PHONE_NUMBER
    assert error.message == "bad number"


def test_twilio_non_json_5xx_is_temporary() -> None:
    error = twilio.normalize(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(error, TemporaryError)
    assert error.provider_code is None


# SendGrid (section 2)
def _sendgrid(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> ProviderError:
    body = {"errors": [{"message": message, "field": field, "help": None}]}
    return sendgrid.normalize(httpx.Response(status, json=body, headers=headers))


SENDGRID = [
    (400, "Does not contain a valid address.", "personalizations.0.to.0.email", E.INVALID_EMAIL, PERM),
    (400, "The to email does not contain a valid address.", None, E.INVALID_EMAIL, PERM),
    (400, "The template_id must be a valid GUID", "template_id", E.TEMPLATE_NOT_APPROVED, PERM),
    (400, "The subject is required.", "subject", E.PERMANENT_ERROR, PERM),
    (400, "The from email does not contain a valid address.", "from.email", E.PERMANENT_ERROR, PERM),
    (401, "The provided authorization grant is invalid, expired, or revoked", None, E.AUTH_FAILED, PERM),
    (401, "Maximum credits exceeded", None, E.QUOTA_EXCEEDED, PERM),
    (403, "The from address does not match a verified Sender Identity.", "from", E.PERMANENT_ERROR, PERM),
    (403, "Your account has been disabled.", None, E.ACCOUNT_SUSPENDED, PERM),
    (413, "payload too large", None, E.PERMANENT_ERROR, PERM),
    (429, "too many requests", None, E.RATE_LIMIT_EXCEEDED, RATE),
    (500, "Internal Server Error", None, E.TEMPORARY_ERROR, TEMP),
    (503, "Service Unavailable", None, E.TEMPORARY_ERROR, TEMP),
]


@pytest.mark.parametrize(("status", "message", "field", "normalized", "kind"), SENDGRID)
def test_sendgrid_answers(
    status: int, message: str, field: str | None, normalized: E, kind: type[ProviderError]
) -> None:
    error = _sendgrid(status, message, field)
    assert type(error) is kind
    assert error.code is normalized
    assert error.http_status == status


def test_sendgrid_429_waits_until_the_window_resets() -> None:
    reset = int(time.time()) + 42
    error = _sendgrid(429, "too many requests", headers={"X-RateLimit-Reset": str(reset)})
    assert error.retry_after is not None
    assert 40 <= error.retry_after <= 42


# WhatsApp (section 3): code, HTTP status, normalized, type, hint
WHATSAPP = [
    (130429, 400, E.RATE_LIMIT_EXCEEDED, RATE, 1.0),
    (131056, 400, E.RATE_LIMIT_EXCEEDED, RATE, 6.0),
    (4, 400, E.RATE_LIMIT_EXCEEDED, RATE, 60.0),
    (17, 400, E.RATE_LIMIT_EXCEEDED, RATE, 60.0),
    (80007, 429, E.RATE_LIMIT_EXCEEDED, RATE, 60.0),
    (131048, 400, E.RATE_LIMIT_EXCEEDED, RATE, 3600.0),
    (131049, 400, E.TEMPORARY_ERROR, TEMP, 86_400.0),
    (131047, 400, E.PERMANENT_ERROR, PERM, None),
    (132000, 400, E.TEMPLATE_NOT_APPROVED, PERM, None),
    (132001, 404, E.TEMPLATE_NOT_APPROVED, PERM, None),
    (132005, 400, E.TEMPLATE_NOT_APPROVED, PERM, None),
    (132007, 400, E.TEMPLATE_NOT_APPROVED, PERM, None),
    (132012, 400, E.TEMPLATE_NOT_APPROVED, PERM, None),
    (132015, 400, E.TEMPLATE_NOT_APPROVED, PERM, None),
    (132016, 400, E.TEMPLATE_NOT_APPROVED, PERM, None),
    (131026, 400, E.PERMANENT_ERROR, PERM, None),
    (131050, 400, E.RECIPIENT_UNSUBSCRIBED, PERM, None),
    (100, 400, E.PERMANENT_ERROR, PERM, None),
    (131008, 400, E.PERMANENT_ERROR, PERM, None),
    (131009, 400, E.PERMANENT_ERROR, PERM, None),
    (190, 401, E.AUTH_FAILED, PERM, None),
    (0, 401, E.AUTH_FAILED, PERM, None),
    (10, 403, E.AUTH_FAILED, PERM, None),
    (200, 403, E.AUTH_FAILED, PERM, None),
    (299, 403, E.AUTH_FAILED, PERM, None),
    (368, 403, E.ACCOUNT_SUSPENDED, PERM, None),
    (131031, 400, E.ACCOUNT_SUSPENDED, PERM, None),
    (131042, 400, E.ACCOUNT_SUSPENDED, PERM, None),
    (1, 500, E.TEMPORARY_ERROR, TEMP, None),
    (2, 503, E.TEMPORARY_ERROR, TEMP, None),
    (131000, 500, E.TEMPORARY_ERROR, TEMP, None),
    (131016, 503, E.TEMPORARY_ERROR, TEMP, None),
]


def _graph(status: int, code: int, details: str = "", headers: dict[str, str] | None = None) -> ProviderError:
    body = {
        "error": {
            "message": f"(#{code}) x",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "A",
        }
    }
    return whatsapp.normalize(httpx.Response(status, json=body, headers=headers))


@pytest.mark.parametrize(("code", "status", "normalized", "kind", "hint"), WHATSAPP)
def test_whatsapp_codes(code: int, status: int, normalized: E, kind: type[ProviderError], hint: float | None) -> None:
    error = _graph(status, code)
    assert type(error) is kind
    assert error.code is normalized
    assert error.provider_code == str(code)
    assert error.retry_after == hint


def test_whatsapp_131009_on_to_is_an_invalid_phone_number() -> None:
    error = _graph(400, 131009, "Invalid 'to' parameter: not a valid phone number.")
    assert error.code is E.INVALID_PHONE_NUMBER


def test_whatsapp_usage_header_gives_the_longer_hint() -> None:
    usage = '{"123": [{"type": "whatsapp", "call_count": 100, "estimated_time_to_regain_access": 5}]}'
    error = _graph(400, 80007, headers={"X-Business-Use-Case-Usage": usage})
    assert error.retry_after == 300.0


def test_whatsapp_unknown_transient_error_is_temporary() -> None:
    body = {"error": {"message": "x", "code": 99999, "is_transient": True}}
    assert isinstance(whatsapp.normalize(httpx.Response(400, json=body)), TemporaryError)
    body = {"error": {"message": "x", "code": 99999}}
    assert isinstance(whatsapp.normalize(httpx.Response(400, json=body)), PermanentError)


# ---- error kinds are a type ---------------------------------------------------------------------
TABLES = {
    "twilio.CODES": twilio.CODES.values(),
    "whatsapp.CODES": whatsapp.CODES.values(),
    "vonage.STATUS": vonage.STATUS.values(),
    "vonage.DLR_CODES": vonage.DLR_CODES.values(),
}


@pytest.mark.parametrize("table", TABLES, ids=str)
def test_every_error_table_row_has_an_error_kind(table: str) -> None:
    """A kind used to be a bare string ("permanent"...): a misspelt one became a permanent error."""
    kinds = {row[1] for row in TABLES[table]}
    assert kinds
    assert all(isinstance(kind, ErrorKind) for kind in kinds), kinds


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 429, 500, 503])
def test_status_and_sendgrid_verdicts_are_error_kinds(status: int) -> None:
    assert isinstance(http.by_status(status)[1], ErrorKind)
    assert isinstance(sendgrid.classify(status, "", None)[1], ErrorKind)


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_each_kind_makes_its_provider_error(kind: ErrorKind) -> None:
    error = http.error(kind, E.TEMPORARY_ERROR, "x", provider_code=None, http_status=None)
    expected = {ErrorKind.PERMANENT: PermanentError, ErrorKind.TEMPORARY: TemporaryError}
    assert type(error) is expected.get(kind, RateLimitedError)
    assert error.retryable is kind.retryable
