"""One conformance suite, run against every provider client and its sandbox over real HTTP:
success, each normalized error, retry hints, rate limiting, timeout, ambiguous send, webhook round
trip (sandbox -> signed webhook -> router -> PostgreSQL), forged webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from outbound_sender.domain import ErrorCode, NewMessage, OutboundMessage
from outbound_sender.errors import (
    AmbiguousSendError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TemporaryError,
)
from outbound_sender.sandboxes.base import Rule, SandboxApp
from outbound_sender.store import messages
from tests.integration.providers.conftest import Case, Webhooks, point_webhooks, serve

E = ErrorCode
PERM, TEMP, RATE = PermanentError, TemporaryError, RateLimitedError
# provider -> [(sandbox rule action, normalized code, exception type, raw provider code)]
ERRORS: dict[str, list[tuple[str, ErrorCode, type[ProviderError], str]]] = {
    "twilio": [
        ("error:21211", E.INVALID_PHONE_NUMBER, PERM, "21211"),
        ("error:21614", E.INVALID_PHONE_NUMBER, PERM, "21614"),
        ("error:21610", E.RECIPIENT_UNSUBSCRIBED, PERM, "21610"),
        ("error:20005", E.ACCOUNT_SUSPENDED, PERM, "20005"),
        ("error:20003", E.AUTH_FAILED, PERM, "20003"),
        ("error:20429", E.RATE_LIMIT_EXCEEDED, RATE, "20429"),
        ("error:21611", E.RATE_LIMIT_EXCEEDED, RATE, "21611"),
        ("error:21408", E.PERMANENT_ERROR, PERM, "21408"),
        ("http:503", E.TEMPORARY_ERROR, TEMP, "20503"),
        ("http:500", E.TEMPORARY_ERROR, TEMP, "20500"),
    ],
    "sendgrid": [
        ("error:invalid_email", E.INVALID_EMAIL, PERM, "400:personalizations.0.to.0.email"),
        ("error:credits", E.QUOTA_EXCEEDED, PERM, "401"),
        ("error:suspended", E.ACCOUNT_SUSPENDED, PERM, "403"),
        ("error:template", E.TEMPLATE_NOT_APPROVED, PERM, "400:template_id"),
        ("error:too_many", E.RATE_LIMIT_EXCEEDED, RATE, "429"),
        ("error:auth", E.AUTH_FAILED, PERM, "401"),
        ("error:forbidden", E.PERMANENT_ERROR, PERM, "403:from"),
        ("error:too_large", E.PERMANENT_ERROR, PERM, "413"),
        ("http:503", E.TEMPORARY_ERROR, TEMP, "503"),
    ],
    "whatsapp": [
        ("error:131009", E.INVALID_PHONE_NUMBER, PERM, "131009"),
        ("error:368", E.ACCOUNT_SUSPENDED, PERM, "368"),
        ("error:131031", E.ACCOUNT_SUSPENDED, PERM, "131031"),
        ("error:132001", E.TEMPLATE_NOT_APPROVED, PERM, "132001"),
        ("error:132000", E.TEMPLATE_NOT_APPROVED, PERM, "132000"),
        ("error:130429", E.RATE_LIMIT_EXCEEDED, RATE, "130429"),
        ("error:131056", E.RATE_LIMIT_EXCEEDED, RATE, "131056"),
        ("error:190", E.AUTH_FAILED, PERM, "190"),
        ("error:131050", E.RECIPIENT_UNSUBSCRIBED, PERM, "131050"),
        ("error:131047", E.PERMANENT_ERROR, PERM, "131047"),
        ("error:131049", E.TEMPORARY_ERROR, TEMP, "131049"),
        ("http:503", E.TEMPORARY_ERROR, TEMP, "2"),
        ("http:500", E.TEMPORARY_ERROR, TEMP, "1"),
    ],
    "vonage": [
        ("error:6", E.INVALID_PHONE_NUMBER, PERM, "6"),
        ("error:33", E.INVALID_PHONE_NUMBER, PERM, "33"),
        ("error:7", E.RECIPIENT_UNSUBSCRIBED, PERM, "7"),
        ("error:8", E.ACCOUNT_SUSPENDED, PERM, "8"),
        ("error:11", E.ACCOUNT_SUSPENDED, PERM, "11"),
        ("error:9", E.QUOTA_EXCEEDED, PERM, "9"),
        ("error:4", E.AUTH_FAILED, PERM, "4"),
        ("error:1", E.RATE_LIMIT_EXCEEDED, RATE, "1"),
        ("error:5", E.TEMPORARY_ERROR, TEMP, "5"),
        ("error:15", E.PERMANENT_ERROR, PERM, "15"),
        ("error:29", E.PERMANENT_ERROR, PERM, "29"),
        ("http:503", E.TEMPORARY_ERROR, TEMP, "503"),
        ("http:500", E.TEMPORARY_ERROR, TEMP, "500"),
    ],
}
ERRORS["ses"] = [
    ("error:BadRequestException", E.INVALID_EMAIL, PERM, "BadRequestException"),  # "Illegal address"
    ("error:MessageRejected", E.PERMANENT_ERROR, PERM, "MessageRejected"),
    ("error:MailFromDomainNotVerifiedException", E.PERMANENT_ERROR, PERM, "MailFromDomainNotVerifiedException"),
    ("error:NotFoundException", E.PERMANENT_ERROR, PERM, "NotFoundException"),
    ("error:AccountSuspendedException", E.ACCOUNT_SUSPENDED, PERM, "AccountSuspendedException"),
    ("error:SendingPausedException", E.ACCOUNT_SUSPENDED, TEMP, "SendingPausedException"),
    ("error:LimitExceededException", E.QUOTA_EXCEEDED, TEMP, "LimitExceededException"),
    ("error:TooManyRequestsException", E.RATE_LIMIT_EXCEEDED, RATE, "TooManyRequestsException"),
    ("error:AccessDeniedException", E.AUTH_FAILED, PERM, "AccessDeniedException"),
    ("http:503", E.TEMPORARY_ERROR, TEMP, "ServiceUnavailable"),
    ("http:500", E.TEMPORARY_ERROR, TEMP, "InternalFailure"),
]
# Invalid input the sandbox rejects by its own validation, as the real API would.
BAD_RECIPIENT = {
    "twilio": ("12345", E.INVALID_PHONE_NUMBER),
    "sendgrid": ("not-an-address", E.INVALID_EMAIL),
    "whatsapp": ("call-me-maybe", E.INVALID_PHONE_NUMBER),
    "vonage": ("12345", E.PERMANENT_ERROR),  # status 3: too short for the `to` field
    "ses": ("not-an-address", E.INVALID_EMAIL),  # BadRequestException "Missing final '@domain'"
}
HINTS = {"twilio": None, "whatsapp": 1.0, "vonage": 1.0, "ses": 1.0}


@dataclass
class Running:
    app: SandboxApp
    url: str


@pytest.fixture
async def running(case: Case) -> AsyncIterator[Running]:
    app = case.sandbox()
    app.config.rules = []
    async with serve(app) as url:
        yield Running(app, url)


def outbound(case: Case, message_id: int = 1, to: str | None = None, **extra: object) -> OutboundMessage:
    fields: dict[str, object] = {"body": "hello", "subject": "hi"} | extra
    return OutboundMessage(
        message_id,
        "org",
        case.channel,
        to or case.recipient,
        "lease",
        1,
        1,
        5,
        **fields,  # type: ignore[arg-type]
    )


async def test_success_returns_the_provider_message_id(case: Case, running: Running) -> None:
    provider = case.provider(running.url)
    try:
        result = await provider.send(outbound(case))
    finally:
        await provider.aclose()
    assert result.provider_message_id
    assert result.provider_message_id.startswith(case.id_prefix)
    assert result.http_status in (200, 201, 202)
    assert running.app.stats["accepted"] == 1
    assert running.app.accepted == {case.recipient: 1}  # by recipient, in E.164: how duplicates are counted


async def test_failure_rate_fails_the_sends_no_rule_matched_with_a_server_error(case: Case, running: Running) -> None:
    running.app.config.failure_rate = 1.0
    provider = case.provider(running.url)
    try:
        with pytest.raises(TemporaryError) as raised:
            await provider.send(outbound(case))
    finally:
        await provider.aclose()
    assert raised.value.code is E.TEMPORARY_ERROR
    assert running.app.stats_document()["recipients"] == {"accepted": {}, "failed": {case.recipient: 1}}


async def test_each_normalized_error(case: Case, running: Running) -> None:
    provider = case.provider(running.url)
    try:
        for action, code, kind, raw in ERRORS[case.name]:
            running.app.config.rules = [Rule(pattern=".", action=action)]
            with pytest.raises(ProviderError) as raised:
                await provider.send(outbound(case))
            error = raised.value
            assert (action, type(error), error.code, error.provider_code) == (action, kind, code, raw)
    finally:
        await provider.aclose()


async def test_the_sandbox_validates_recipients_like_the_real_api(case: Case, running: Running) -> None:
    recipient, code = BAD_RECIPIENT[case.name]
    provider = case.provider(running.url)
    try:
        with pytest.raises(PermanentError) as raised:
            await provider.send(outbound(case, to=recipient))
    finally:
        await provider.aclose()
    assert raised.value.code is code
    assert running.app.stats["accepted"] == 0


async def test_wrong_credentials_are_auth_failed(case: Case, running: Running) -> None:
    app = running.app
    if case.name == "twilio":
        app.config.auth_token = "0" * 32  # type: ignore[attr-defined]
    elif case.name == "sendgrid":
        app.config.api_key = "SG.other"  # type: ignore[attr-defined]
    elif case.name == "vonage":
        app.config.signature_secret = "another-signature-secret"  # type: ignore[attr-defined]
    elif case.name == "ses":
        app.config.secret_access_key = "another/secret/access/key"  # type: ignore[attr-defined]
    else:
        app.config.access_token = "EAAother"  # type: ignore[attr-defined]
    provider = case.provider(running.url)
    try:
        with pytest.raises(PermanentError) as raised:
            await provider.send(outbound(case))
    finally:
        await provider.aclose()
    assert raised.value.code is E.AUTH_FAILED
    # Vonage: status 14 in a 200; SES: 403 InvalidSignatureException
    assert raised.value.http_status == {"vonage": 200, "ses": 403}.get(case.name, 401)


async def test_throughput_limit_answers_like_the_real_api_with_a_hint(case: Case, running: Running) -> None:
    if case.name == "sendgrid":
        running.app.config.rate_limit = 1  # type: ignore[attr-defined]
        running.app.config.rate_window_seconds = 60  # type: ignore[attr-defined]
    else:
        running.app.config.rate_per_second = 1.0
    provider = case.provider(running.url)
    try:
        await provider.send(outbound(case))
        with pytest.raises(RateLimitedError) as raised:
            await provider.send(outbound(case))
    finally:
        await provider.aclose()
    assert raised.value.code is E.RATE_LIMIT_EXCEEDED
    if case.name == "sendgrid":
        assert raised.value.retry_after is not None
        assert 1.0 <= raised.value.retry_after <= 60.0
    else:
        assert raised.value.retry_after == HINTS[case.name]


async def test_timeout_is_an_ambiguous_send(case: Case, running: Running) -> None:
    running.app.config.rules = [Rule(pattern=".", action="slow")]
    running.app.config.timeout_hold_seconds = 2.0
    provider = case.provider(running.url, read_timeout=0.3)
    try:
        with pytest.raises(AmbiguousSendError) as raised:
            await provider.send(outbound(case))
    finally:
        await provider.aclose()
    assert raised.value.code is E.TEMPORARY_ERROR
    assert raised.value.retry_after == 0.5  # the documented floor before a retry
    assert running.app.stats["accepted"] == 1  # the provider did take it: hence "ambiguous"


async def test_connection_refused_is_a_safe_temporary_error(case: Case) -> None:
    async with serve(case.sandbox()) as url:
        pass  # the port is closed again
    provider = case.provider(url)
    try:
        with pytest.raises(TemporaryError) as raised:
            await provider.send(outbound(case))
    finally:
        await provider.aclose()
    assert not isinstance(raised.value, AmbiguousSendError)


# ---- webhook round trip -----------------------------------------------------------------------
async def _stored_message(db: asyncpg.Connection, case: Case, to: str | None = None) -> int:
    new = NewMessage("org", case.channel, to or case.recipient, body="hello", subject="hi")
    return await messages.enqueue(db, new)


async def _wait_for(db: asyncpg.Connection, query: str, *args: object, want: object) -> object:
    value = None
    for _ in range(200):
        value = await db.fetchval(query, *args)
        if value == want:
            return value
        await asyncio.sleep(0.025)
    return value


async def test_webhook_round_trip_records_delivery(
    case: Case, running: Running, webhooks: Webhooks, db: asyncpg.Connection
) -> None:
    point_webhooks(running.app, webhooks.url)
    message_id = await _stored_message(db, case)
    provider = case.provider(running.url, webhooks=webhooks.url)
    try:
        result = await provider.send(outbound(case, message_id))
    finally:
        await provider.aclose()
    query = "SELECT delivery_status FROM outbound_message WHERE id = $1"
    assert await _wait_for(db, query, message_id, want=case.final_status) == case.final_status
    await running.app.webhooks.drain()
    rows = await db.fetch("SELECT * FROM outbound_delivery_event WHERE outbound_message_id = $1", message_id)
    assert {r["provider_message_id"] for r in rows} == {result.provider_message_id}
    assert running.app.webhooks.sent == {"200": len(rows)}
    status = await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", message_id)
    assert status == "QUEUED"  # delivery receipts never change `status`


ASYNC_FAILURE = {
    "twilio": ("async:30003", "UNDELIVERED", E.TEMPORARY_ERROR),
    "sendgrid": ("async:dropped_unsubscribed", "BOUNCED", E.RECIPIENT_UNSUBSCRIBED),
    "whatsapp": ("async:131026", "UNDELIVERED", E.PERMANENT_ERROR),
    "vonage": ("async:3", "UNDELIVERED", E.INVALID_PHONE_NUMBER),
    "ses": ("async:bounce", "BOUNCED", E.INVALID_EMAIL),
}


async def test_delivery_failure_by_webhook_is_normalized(
    case: Case, running: Running, webhooks: Webhooks, db: asyncpg.Connection
) -> None:
    action, final, code = ASYNC_FAILURE[case.name]
    running.app.config.rules = [Rule(pattern=".", action=action)]
    point_webhooks(running.app, webhooks.url)
    message_id = await _stored_message(db, case)
    provider = case.provider(running.url, webhooks=webhooks.url)
    try:
        await provider.send(outbound(case, message_id))
    finally:
        await provider.aclose()
    query = "SELECT delivery_status FROM outbound_message WHERE id = $1"
    assert await _wait_for(db, query, message_id, want=final) == final
    failed = await db.fetchval(
        "SELECT error_code FROM outbound_delivery_event WHERE outbound_message_id = $1 AND error_code IS NOT NULL",
        message_id,
    )
    assert failed == code.value
