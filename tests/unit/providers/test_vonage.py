"""Vonage SMS: every row of the submission status and receipt err-code tables, the signature of
requests and receipts against known answers, the request the client builds, the receipt parser."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

import httpx
import pytest

from outbound_sender.domain import Channel, OutboundMessage
from outbound_sender.domain import DeliveryStatus as D
from outbound_sender.domain import ErrorCode as E
from outbound_sender.errors import PermanentError, ProviderError, RateLimitedError, TemporaryError
from outbound_sender.providers import vonage
from outbound_sender.sandboxes import vonage as vonage_sandbox
from outbound_sender.webhooks import vonage as vonage_webhook
from outbound_sender.webhooks.events import MalformedEvent

PERM, TEMP, RATE = PermanentError, TemporaryError, RateLimitedError


def _refused(status: str, text: str = "refused", http_status: int = 200) -> ProviderError:
    body = {"message-count": "1", "messages": [{"status": status, "error-text": text}]}
    return vonage.normalize(httpx.Response(http_status, json=body))


# status, normalized, exception type, retry hint, about the recipient
STATUS = [
    (1, E.RATE_LIMIT_EXCEEDED, RATE, 1.0, False),
    (2, E.PERMANENT_ERROR, PERM, None, False),
    (3, E.PERMANENT_ERROR, PERM, None, False),
    (4, E.AUTH_FAILED, PERM, None, False),
    (5, E.TEMPORARY_ERROR, TEMP, None, False),
    (6, E.INVALID_PHONE_NUMBER, PERM, None, True),
    (7, E.RECIPIENT_UNSUBSCRIBED, PERM, None, True),
    (8, E.ACCOUNT_SUSPENDED, PERM, None, False),
    (9, E.QUOTA_EXCEEDED, PERM, None, False),
    (10, E.RATE_LIMIT_EXCEEDED, RATE, 1.0, False),
    (11, E.ACCOUNT_SUSPENDED, PERM, None, False),
    (12, E.PERMANENT_ERROR, PERM, None, False),
    (14, E.AUTH_FAILED, PERM, None, False),
    (15, E.PERMANENT_ERROR, PERM, None, False),
    (22, E.PERMANENT_ERROR, PERM, None, False),
    (23, E.PERMANENT_ERROR, PERM, None, False),
    (29, E.PERMANENT_ERROR, PERM, None, False),
    (32, E.AUTH_FAILED, PERM, None, False),
    (33, E.INVALID_PHONE_NUMBER, PERM, None, True),
]


def test_the_status_table_is_the_tested_one() -> None:
    assert set(vonage.STATUS) == {row[0] for row in STATUS}


@pytest.mark.parametrize(("status", "normalized", "kind", "hint", "recipient"), STATUS)
def test_submission_status(
    status: int, normalized: E, kind: type[ProviderError], hint: float | None, recipient: bool
) -> None:
    error = _refused(str(status), f"text of {status}")
    assert type(error) is kind
    assert (error.code, error.provider_code, error.http_status) == (normalized, str(status), 200)
    assert (error.retry_after, error.about_recipient, error.message) == (hint, recipient, f"text of {status}")


@pytest.mark.parametrize(
    ("status", "normalized", "kind"),
    [(500, E.TEMPORARY_ERROR, TEMP), (503, E.TEMPORARY_ERROR, TEMP), (429, E.RATE_LIMIT_EXCEEDED, RATE),
     (401, E.AUTH_FAILED, PERM), (404, E.PERMANENT_ERROR, PERM)],
)  # fmt: skip
def test_an_answer_without_a_message_status_goes_by_http_status(
    status: int, normalized: E, kind: type[ProviderError]
) -> None:
    error = vonage.normalize(httpx.Response(status, text="<html>gateway</html>"))
    assert (type(error), error.code, error.provider_code, error.http_status) == (kind, normalized, str(status), status)


def test_an_unknown_status_is_permanent() -> None:
    error = _refused("99")
    assert (type(error), error.code, error.provider_code) == (PERM, E.PERMANENT_ERROR, "99")


def test_a_retry_after_header_wins_over_the_table_hint() -> None:
    body = {"messages": [{"status": "1", "error-text": "Throughput Rate Exceeded"}]}
    error = vonage.normalize(httpx.Response(200, json=body, headers={"Retry-After": "4"}))
    assert error.retry_after == 4.0


def test_a_message_refused_after_some_parts_were_accepted_is_not_retried() -> None:
    """Retrying would send the accepted parts twice: the refusal is permanent whatever its status."""
    parts = [{"status": "0", "message-id": "A1"}, {"status": "1", "error-text": "Throughput Rate Exceeded"}]
    error = vonage.normalize(httpx.Response(200, json={"message-count": "2", "messages": parts}))
    assert (type(error), error.code, error.provider_code) == (PERM, E.RATE_LIMIT_EXCEEDED, "1")
    assert "other parts" in error.message


# err-code of a receipt -> normalized
DLR = [
    (1, E.TEMPORARY_ERROR),
    (2, E.TEMPORARY_ERROR),
    (3, E.INVALID_PHONE_NUMBER),
    (4, E.RECIPIENT_UNSUBSCRIBED),
    (5, E.PERMANENT_ERROR),
    (6, E.PERMANENT_ERROR),
    (7, E.TEMPORARY_ERROR),
    (8, E.TEMPORARY_ERROR),
    (9, E.INVALID_PHONE_NUMBER),
    (10, E.PERMANENT_ERROR),
    (11, E.INVALID_PHONE_NUMBER),
    (12, E.INVALID_PHONE_NUMBER),
    (13, E.PERMANENT_ERROR),
    (14, E.PERMANENT_ERROR),
    (15, E.PERMANENT_ERROR),
    (16, E.PERMANENT_ERROR),
    (50, E.PERMANENT_ERROR),
    (51, E.PERMANENT_ERROR),
    (52, E.PERMANENT_ERROR),
    (53, E.RECIPIENT_UNSUBSCRIBED),
    (54, E.PERMANENT_ERROR),
    (99, E.TEMPORARY_ERROR),
]


def test_the_receipt_table_is_the_tested_one() -> None:
    assert set(vonage.DLR_CODES) == {row[0] for row in DLR}


@pytest.mark.parametrize(("code", "normalized"), DLR)
def test_a_failed_receipt_carries_the_normalized_error(code: int, normalized: E) -> None:
    receipt = {"messageId": "0A00", "status": "failed", "err-code": str(code), "client-ref": "42"}
    event = vonage_webhook.event(receipt)
    assert (event.status, event.error_code, event.provider_code, event.outbound_id) == (
        D.UNDELIVERED,
        normalized,
        str(code),
        42,
    )


# ---- signatures -------------------------------------------------------------------------------
SIMPLE = {"a": "1", "b": "2", "timestamp": "1461605396"}
SIMPLE_STRING = b"&a=1&b=2&timestamp=1461605396"


def test_md5hash_known_answer_from_vonages_sdk_tests() -> None:
    assert vonage.signature("secret", SIMPLE, "md5hash") == "6af838ef94998832dbfc29020b564830"
    assert hashlib.md5(SIMPLE_STRING + b"secret").hexdigest() == "6af838ef94998832dbfc29020b564830"


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_hmac_methods_known_answer(method: vonage.SignatureMethod) -> None:
    expected = hmac.new(b"secret", SIMPLE_STRING, method).hexdigest()
    assert vonage.signature("secret", SIMPLE, method) == expected
    assert vonage.signature("secret", {**SIMPLE, "sig": expected}, method) == expected  # sig is not signed


RECEIPT = {
    "messageId": "0A0000001234567B",
    "status": "delivered",
    "api-key": "abcd1234",
    "client-ref": "42",
    "nonce": "ec11dd3e",
    "text": "a&b=c",
    "timestamp": "1582650446",
}
# Sorted by name, & and = in values replaced by _, written out by hand.
RECEIPT_STRING = (
    b"&api-key=abcd1234&client-ref=42&messageId=0A0000001234567B&nonce=ec11dd3e&status=delivered"
    b"&text=a_b_c&timestamp=1582650446"
)


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
def test_a_signed_receipt_verifies_in_either_case_and_only_while_recent(method: vonage.SignatureMethod) -> None:
    if method == "md5hash":
        expected = hashlib.md5(RECEIPT_STRING + b"secret").hexdigest()
    else:
        expected = hmac.new(b"secret", RECEIPT_STRING, method).hexdigest()
    now = 1582650446 + 10
    for given in (expected, expected.upper()):
        assert vonage_webhook.verify("secret", {**RECEIPT, "sig": given}, method, now=now)
    assert not vonage_webhook.verify("secret", {**RECEIPT, "sig": expected}, method, now=now + vonage_webhook.MAX_SKEW)
    assert not vonage_webhook.verify("other", {**RECEIPT, "sig": expected}, method, now=now)
    assert not vonage_webhook.verify("", {**RECEIPT, "sig": expected}, method, now=now)
    tampered = {**RECEIPT, "status": "failed", "sig": expected}
    assert not vonage_webhook.verify("secret", tampered, method, now=now)


@pytest.mark.parametrize(
    "receipt",
    [
        {k: v for k, v in RECEIPT.items() if k != "timestamp"},
        {**RECEIPT, "timestamp": "soon"},
        {**RECEIPT, "timestamp": "9" * 40},
        RECEIPT,  # no sig
    ],
)
def test_a_receipt_without_a_readable_signature_is_refused(receipt: dict[str, str]) -> None:
    given = {**receipt, "sig": "é" * 32} if receipt is not RECEIPT else receipt
    assert not vonage_webhook.verify("secret", given, "md5hash", now=1582650446)


# ---- the request ------------------------------------------------------------------------------
def _message(body: str = "hello", to: str = "+15557654321") -> OutboundMessage:
    return OutboundMessage(42, "org", Channel.SMS, to, "lease", 1, 1, 5, body=body)


def test_the_form_with_an_api_secret() -> None:
    settings = vonage_sandbox.account("http://x", signature_secret=None)
    fields = vonage.form(settings, _message(), "https://hooks.example.com/webhooks/")
    assert fields == {
        "api_key": settings.api_key,
        "api_secret": "sandbox-secret-5a5a",
        "from": "15005550006",
        "to": "15557654321",
        "text": "hello",
        "type": "text",
        "client-ref": "42",
        "callback": "https://hooks.example.com/webhooks/vonage/dlr",
    }


def test_a_signed_form_carries_no_api_secret() -> None:
    settings = vonage_sandbox.account("http://x", signature_method="sha256")
    fields = vonage.form(settings, _message(), None, now=1700000000)
    assert "api_secret" not in fields
    assert "callback" not in fields
    assert fields["timestamp"] == "1700000000"
    unsigned = "".join(f"&{k}={v}" for k, v in sorted(fields.items()) if k != "sig")
    secret = settings.signature_secret.get_secret_value() if settings.signature_secret else ""
    assert fields["sig"] == hmac.new(secret.encode(), unsigned.encode(), "sha256").hexdigest()


@pytest.mark.parametrize(
    ("text", "kind"),
    [("hello {world} €5 ^~|[]\\", "text"), ("Ça va? ÄÖÑÜ§¿", "text"), ("привет", "unicode"), ("ok 👍", "unicode")],
)
def test_text_outside_the_gsm_alphabet_is_sent_as_unicode(text: str, kind: str) -> None:
    assert vonage.text_type(text) == kind


def test_the_probe_carries_the_credentials_as_query_parameters_not_in_its_url() -> None:
    settings = vonage_sandbox.account("http://x", signature_secret=None)
    probe = vonage.credentials_probe(settings)
    assert probe.url == "http://x/account/get-balance"
    assert probe.params == {"api_key": settings.api_key, "api_secret": "sandbox-secret-5a5a"}


async def test_the_client_needs_credentials_and_a_sender() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="VONAGE_API_SECRET or VONAGE_SIGNATURE_SECRET"):
            vonage.VonageProvider(client, vonage_sandbox.account("http://x", api_secret=None, signature_secret=None))
        with pytest.raises(ValueError, match="VONAGE_FROM_NUMBER"):
            vonage.VonageProvider(client, vonage_sandbox.account("http://x", from_number=None))


async def test_the_client_sends_the_form_and_reads_the_first_parts_id() -> None:
    seen: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(dict(parse_qsl(request.content.decode())))
        parts = [{"status": "0", "message-id": "PART1"}, {"status": "0", "message-id": "PART2"}]
        return httpx.Response(200, json={"message-count": "2", "messages": parts})

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = vonage.VonageProvider(client, vonage_sandbox.account("http://vonage.test"))
    try:
        result = await provider.send(_message("x" * 200))
    finally:
        await provider.aclose()
    assert (result.provider_message_id, result.http_status) == ("PART1", 200)
    assert seen[0]["to"] == "15557654321"
    assert seen[0]["client-ref"] == "42"


# ---- receipts ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("accepted", D.SENT),
        ("buffered", D.SENT),
        ("delivered", D.DELIVERED),
        ("expired", D.UNDELIVERED),
        ("failed", D.UNDELIVERED),
        ("rejected", D.UNDELIVERED),
        ("unknown", None),
    ],
)
def test_receipt_statuses(raw: str, status: D | None) -> None:
    event = vonage_webhook.event({"messageId": "0A00", "status": raw, "err-code": "0", "api-key": "abcd1234"})
    assert (event.status, event.event_id, event.account, event.outbound_id) == (status, f"0A00:{raw}", "abcd1234", None)
    assert event.error_code is None or raw in ("expired", "failed", "rejected")


@pytest.mark.parametrize(
    ("receipt", "reason"),
    [
        ({"status": "delivered"}, "messageId missing"),
        ({"messageId": "0A00", "status": "delivered", "client-ref": "my-ref"}, "outbound_id is not a message id"),
        ({"messageId": "0A00", "status": "delivered", "timestamp": "yesterday"}, "timestamp out of range"),
    ],
)
def test_an_unreadable_receipt_is_malformed(receipt: dict[str, str], reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        vonage_webhook.event(receipt)


def test_vonage_backs_twilio_up_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both on channel SMS: without a priority set, Twilio sends and Vonage waits for failover."""
    from outbound_sender.app import provider_priorities
    from outbound_sender.providers.accounts import load_provider_settings

    for name in ("TWILIO_PRIORITY", "VONAGE_PRIORITY"):
        monkeypatch.delenv(name, raising=False)
    priorities = provider_priorities(load_provider_settings())
    assert priorities["twilio"] < priorities["vonage"] < priorities["sandbox"]
    monkeypatch.setenv("VONAGE_PRIORITY", "5")
    assert provider_priorities(load_provider_settings())["vonage"] == 5


@pytest.mark.parametrize("body", [b"", b"<html>ok</html>", b'{"message-count": "1"}', b'{"messages": []}'])
async def test_a_200_without_a_message_status_is_an_ambiguous_send(body: bytes) -> None:
    """The request reached Vonage and no part says whether it was taken: retried only after the
    ambiguous-send delay, so a receipt can settle it first (never dropped, never sent at once)."""
    from outbound_sender.errors import AmbiguousSendError

    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200, content=body)))
    provider = vonage.VonageProvider(client, vonage_sandbox.account("http://vonage.test"), ambiguous_retry=30.0)
    try:
        with pytest.raises(AmbiguousSendError) as raised:
            await provider.send(_message())
    finally:
        await provider.aclose()
    assert (raised.value.retry_after, raised.value.http_status) == (30.0, 200)
