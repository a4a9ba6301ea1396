"""The SES client, its sandbox and its SNS receipts held to what botocore ships: the sesv2 service
model (operations, members, error shapes), botocore's own signer, and the published SigV4 example;
SNS signatures made and checked with cryptography; each SES event type read into its delivery state."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.validate import validate_parameters
from cryptography import x509

from outbound_sender.domain import Channel, DeliveryStatus, ErrorCode, OutboundMessage
from outbound_sender.errors import PermanentError, ProviderError, RateLimitedError, TemporaryError
from outbound_sender.providers import ses
from outbound_sender.providers.http import ErrorKind
from outbound_sender.providers.ses import SesProvider, SesSettings, SigV4
from outbound_sender.sandboxes import ses as sandbox
from outbound_sender.sandboxes.base import Request
from outbound_sender.webhooks import events, sns
from outbound_sender.webhooks import ses as ses_webhook
from outbound_sender.worker.circuit import is_provider_failure

MODEL = ServiceModel(Loader().load_service_model("sesv2", "service-2"), "sesv2")
SEND = MODEL.operation_model("SendEmail")
BASE = "http://ses.test"


def _message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {"body": "hello", "subject": "hi"} | fields
    return OutboundMessage(42, "org", Channel.EMAIL, "ann@example.com", "lease", 1, 1, 5, **values)


def _settings(**overrides: object) -> SesSettings:
    return sandbox.account(BASE, **overrides)


# ---- the wire format, against the service model -----------------------------------------------
def test_the_paths_and_signing_name_are_the_models() -> None:
    assert (SEND.http["method"], SEND.http["requestUri"]) == ("POST", ses.SEND_PATH)
    account = MODEL.operation_model("GetAccount")
    assert (account.http["method"], account.http["requestUri"]) == ("GET", ses.ACCOUNT_PATH)
    assert MODEL.signing_name == ses.SERVICE
    assert MODEL.protocol == "rest-json"


@pytest.mark.parametrize(
    "message",
    [
        _message(),
        _message(template_code="welcome", template_params={"name": "Ann"}, body=None),
        _message(subject=None),
    ],
    ids=["simple", "template", "no-subject"],
)
def test_the_body_is_a_valid_send_email_input(message: OutboundMessage) -> None:
    settings = _settings(from_name="Zoë Ltd", reply_to="help@example.com")
    body = ses.payload(settings, message)
    assert SEND.input_shape is not None
    validate_parameters(body, SEND.input_shape)  # unknown members, types, required members
    assert body["Destination"] == {"ToAddresses": ["ann@example.com"]}
    assert body["EmailTags"] == [{"Name": "outbound_id", "Value": "42"}]
    assert body["ConfigurationSetName"] == sandbox.CONFIGURATION_SET
    assert body["ReplyToAddresses"] == ["help@example.com"]
    assert body["FromEmailAddress"] == f"=?utf-8?q?Zo=C3=AB_Ltd?= <{sandbox.FROM_EMAIL}>"


def test_plain_and_template_content() -> None:
    simple = ses.payload(_settings(), _message())["Content"]
    assert simple == {
        "Simple": {
            "Subject": {"Data": "hi", "Charset": "UTF-8"},
            "Body": {"Text": {"Data": "hello", "Charset": "UTF-8"}},
        }
    }
    template = ses.payload(_settings(), _message(template_code="welcome", template_params={"n": 1}))["Content"]
    assert template == {"Template": {"TemplateName": "welcome", "TemplateData": '{"n": 1}'}}


# ---- the error table ----------------------------------------------------------------------------
def test_every_error_shape_of_send_email_is_in_the_table_and_the_sandbox_with_its_status() -> None:
    shapes = {shape.name: shape.metadata["error"]["httpStatusCode"] for shape in SEND.error_shapes}
    assert set(shapes) <= set(ses.ERRORS)
    assert {name: sandbox.ERRORS[name][0] for name in shapes} == shapes


def test_the_kinds_the_breaker_and_the_retries_see() -> None:
    kinds = {name: row[1] for name, row in ses.ERRORS.items()}
    assert kinds["TooManyRequestsException"] is ErrorKind.RATELIMIT
    assert kinds["MessageRejected"] is ErrorKind.PERMANENT
    assert kinds["SendingPausedException"] is ErrorKind.TEMPORARY
    assert kinds["LimitExceededException"] is ErrorKind.TEMPORARY
    assert ses.classify(None, 503)[1] is ErrorKind.TEMPORARY
    assert ses.classify("SomethingNew", 500)[1] is ErrorKind.TEMPORARY
    assert ses.classify("SomethingNew", 400)[1] is ErrorKind.PERMANENT


def _answer(status: int, shape: str, message: str, *, header: bool = True, key: str = "code") -> httpx.Response:
    if header:
        return httpx.Response(status, json={"message": message}, headers={"x-amzn-ErrorType": f"{shape}:http://x/"})
    return httpx.Response(status, json={"message": message, key: shape})


P, T, R = PermanentError, TemporaryError, RateLimitedError
# answer, exception, normalized code, provider code, counted against the circuit breaker
NORMALIZED = {
    "rejected": (_answer(400, "MessageRejected", "Not verified."), P, "PERMANENT_ERROR", "MessageRejected", False),
    "bad-address": (_answer(400, "BadRequestException", "Illegal address"), P, "INVALID_EMAIL", "", False),
    "bad-request": (_answer(400, "BadRequestException", "Bad tag", header=False), P, "PERMANENT_ERROR", "", False),
    "throttled": (_answer(429, "TooManyRequestsException", "x", header=False, key="__type"), R, "RATE_LIMIT_EXCEEDED", "", False),  # noqa: E501
    "suspended": (_answer(400, "aws#AccountSuspendedException", "x", header=False), P, "ACCOUNT_SUSPENDED", "", True),
    "paused": (_answer(400, "SendingPausedException", "paused"), T, "ACCOUNT_SUSPENDED", "", True),
    "quota": (_answer(400, "LimitExceededException", "Daily message quota exceeded."), T, "QUOTA_EXCEEDED", "", True),
    "signature": (_answer(403, "InvalidSignatureException", "no"), P, "AUTH_FAILED", "", True),
    "502": (httpx.Response(502, text="<html>bad gateway</html>"), T, "TEMPORARY_ERROR", "502", True),
}  # fmt: skip


@pytest.mark.parametrize("case", NORMALIZED)
def test_normalize(case: str) -> None:
    response, kind, code, raw, breaker = NORMALIZED[case]
    error = ses.normalize(response)
    named = {"throttled": "TooManyRequestsException", "suspended": "AccountSuspendedException"}
    expected_raw = raw or named.get(case) or response.headers.get("x-amzn-errortype", "").split(":")[0]
    expected_raw = expected_raw or response.json().get("code")
    assert (type(error), error.code.value, error.provider_code) == (kind, code, expected_raw)
    assert is_provider_failure(error) is breaker  # one recipient's refusal never opens the circuit


def test_the_retry_after_header_wins_over_the_tables_hint() -> None:
    response = httpx.Response(429, json={"message": "x"}, headers={"x-amzn-ErrorType": "TooManyRequestsException"})
    assert ses.normalize(response).retry_after == 1.0
    response.headers["Retry-After"] = "7"
    assert ses.normalize(response).retry_after == 7.0


# ---- settings -----------------------------------------------------------------------------------
def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "key").write_text("AKIA" + "A" * 16 + "\n")
    (tmp_path / "secret").write_text("s3cret\n")
    monkeypatch.setenv("SES_ACCESS_KEY_ID_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("SES_SECRET_ACCESS_KEY_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("SES_SESSION_TOKEN_FILE", str(tmp_path / "absent"))  # the Secret has no sessionToken
    monkeypatch.setenv("SES_REGION", "eu-west-1")
    topic = "arn:aws:sns:eu-west-1:123456789012:"
    monkeypatch.setenv("SES_SNS_TOPIC_ARNS", f"{topic}a, {topic}b")
    settings = SesSettings()
    assert settings.access_key_id == "AKIA" + "A" * 16
    assert settings.secret_access_key is not None
    assert settings.secret_access_key.get_secret_value() == "s3cret"
    assert settings.session_token is None
    assert settings.endpoint() == "https://email.eu-west-1.amazonaws.com"
    assert settings.sns_topic_arns == [f"{topic}a", f"{topic}b"]
    monkeypatch.setenv("SES_REGION", "Europe")
    with pytest.raises(ValueError, match="region"):
        SesSettings()


def test_the_client_needs_credentials_region_and_a_sender() -> None:
    with pytest.raises(ValueError, match="SES_REGION"):
        SesProvider(httpx.AsyncClient(), _settings(region=None))
    with pytest.raises(ValueError, match="SES_FROM_EMAIL"):
        SesProvider(httpx.AsyncClient(), _settings(from_email=None))


# ---- SigV4 --------------------------------------------------------------------------------------
def _sandbox_request(request: httpx.Request) -> Request:
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Request(request.method, request.url.path, request.url.query.decode(), headers, request.content)


def _signed(settings: SesSettings, body: bytes = b'{"a":1}') -> httpx.Request:
    request = httpx.Request(
        "POST", f"{BASE}{ses.SEND_PATH}", content=body, headers={"Content-Type": "application/json"}
    )
    SigV4.of(settings).sign(request)
    return request


def test_the_published_sigv4_example_signs_and_verifies() -> None:
    """AWS's SigV4 test suite, get-vanilla: botocore's signer (the client's) and the sandbox's own
    implementation both give the published signature."""
    request = Request("GET", "/", "", {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"}, b"")
    canonical = sandbox.canonical_request(request, ["host", "x-amz-date"])
    secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    expected = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    assert (
        sandbox.signature(secret_key, "20150830T123600Z", ("20150830", "us-east-1", "service"), canonical) == expected
    )
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", secret_key), "service", "us-east-1")
    aws = AWSRequest("GET", "https://example.amazonaws.com/", headers={"X-Amz-Date": "20150830T123600Z"})
    aws.context["timestamp"] = "20150830T123600Z"
    assert signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws) == expected


def test_every_request_is_signed_and_the_sandbox_checks_it() -> None:
    settings = _settings()
    config = sandbox.SesConfig()
    request = _signed(settings)
    assert request.headers["x-amz-security-token"] == sandbox.SESSION_TOKEN
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token" in request.headers["authorization"]
    assert sandbox.verify_sigv4(_sandbox_request(request), config) is None
    tampered = _sandbox_request(request)
    tampered.body = b'{"a":2}'
    refusals = {
        "tampered body": (tampered, config),
        "other secret": (_sandbox_request(_signed(_settings(secret_access_key="x" * 40))), config),
        "other region": (_sandbox_request(_signed(_settings(region="eu-west-1"))), config),
        "no token": (_sandbox_request(_signed(_settings(session_token=None))), config),
        "unknown key": (_sandbox_request(request), config.model_copy(update={"access_key_id": "AKIAOTHER0000000"})),
    }
    shapes = {
        name: sandbox.verify_sigv4(req, cfg).headers["x-amzn-ErrorType"].split(":")[0]  # type: ignore[union-attr]
        for name, (req, cfg) in refusals.items()
    }
    assert shapes == {
        "tampered body": "InvalidSignatureException",
        "other secret": "InvalidSignatureException",
        "other region": "InvalidSignatureException",
        "no token": "UnrecognizedClientException",
        "unknown key": "UnrecognizedClientException",
    }
    late = sandbox.verify_sigv4(_sandbox_request(request), config, now=time.time() + 600)
    assert late is not None
    assert "Signature expired" in late.body["message"]


def test_long_term_keys_sign_without_a_token() -> None:
    request = _signed(_settings(session_token=None))
    assert "x-amz-security-token" not in request.headers
    assert sandbox.verify_sigv4(_sandbox_request(request), sandbox.SesConfig(session_token=None)) is None


# ---- SNS signatures -----------------------------------------------------------------------------
TOPIC = sandbox.SNS_TOPIC_ARN
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"


def _sns(version: str = "1", **fields: str) -> dict[str, str]:
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps({"eventType": "Delivery", "mail": {"messageId": "m-1"}}),
        "Timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
    } | fields
    message["Signature"] = sns.sign(message, sandbox.sns_signing_key(), version)
    return message


def _certificate() -> x509.Certificate:
    return x509.load_pem_x509_certificate(sandbox.sns_certificate_pem())


def test_the_canonical_string_is_the_documented_one() -> None:
    message = {"Type": "Notification", "MessageId": "i", "TopicArn": "t", "Message": "m", "Timestamp": "s"}
    assert sns.canonical(message) == b"Message\nm\nMessageId\ni\nTimestamp\ns\nTopicArn\nt\nType\nNotification\n"
    assert sns.canonical(message | {"Subject": "x"}).startswith(b"Message\nm\nMessageId\ni\nSubject\nx\n")
    confirmation = message | {"Type": "SubscriptionConfirmation", "SubscribeURL": "u", "Token": "k"}
    assert sns.canonical(confirmation) == (
        b"Message\nm\nMessageId\ni\nSubscribeURL\nu\nTimestamp\ns\nToken\nk\nTopicArn\nt\nType\nSubscriptionConfirmation\n"
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_signatures_verify_and_any_change_breaks_them(version: str) -> None:
    message = _sns(version)
    certificate = _certificate()
    assert sns.verify(message, certificate)
    assert not sns.verify(message | {"Message": message["Message"].replace("Delivery", "Bounce")}, certificate)
    assert not sns.verify(message | {"SignatureVersion": "2" if version == "1" else "1"}, certificate)
    assert not sns.verify(message | {"SignatureVersion": "3"}, certificate)
    assert not sns.verify({k: v for k, v in message.items() if k != "Signature"}, certificate)
    assert not sns.verify(message | {"Signature": "not base64!"}, certificate)
    assert not sns.verify({k: v for k, v in message.items() if k != "TopicArn"}, certificate)


def test_only_sns_hosts_of_the_topics_region_are_trusted() -> None:
    assert sns.trusted_url(CERT_URL, TOPIC, ())
    china = TOPIC.replace("us-east-1", "cn-north-1")
    assert sns.trusted_url(CERT_URL.replace("us-east-1.amazonaws.com", "cn-north-1.amazonaws.com.cn"), china, ())
    subscribe = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=y"
    assert sns.trusted_url(subscribe, TOPIC, (), sns.SUBSCRIBE_PATH)
    assert not sns.trusted_url(subscribe, TOPIC, ())  # not a certificate's path
    for url in [
        "http://sns.us-east-1.amazonaws.com/x.pem",  # not https
        "https://sns.eu-west-1.amazonaws.com/x.pem",  # another region than the topic's
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com/any/thing.pem",  # not the path SNS serves certificates at
        None,
    ]:
        assert not sns.trusted_url(url, TOPIC, ()), url
    assert not sns.trusted_url(CERT_URL, "arn:aws:sns:nowhere", ())
    assert sns.trusted_url("http://127.0.0.1:8095/SimpleNotificationService-sandbox.pem", TOPIC, ("http://127.0.0.1:",))


def test_an_old_message_is_a_replay() -> None:
    now = time.time()
    assert sns.recent(_sns(), now)
    assert not sns.recent(_sns(), now + sns.MAX_AGE_SECONDS + 60)
    assert not sns.recent(_sns(Timestamp="2026-11-29T12:00:00"), now)  # no offset
    assert not sns.recent(_sns(Timestamp="yesterday"), now)


# ---- SES events -> delivery states ---------------------------------------------------------------
def _event(name: str, detail: dict[str, Any] | None = None, outbound_id: str = "42") -> dict[str, str]:
    event: dict[str, Any] = {
        "eventType": name,
        "mail": {
            "messageId": "0100-m",
            "timestamp": "2026-11-29T12:00:00.000Z",
            "tags": {"outbound_id": [outbound_id]},
        },
    }
    if detail is not None:
        event["failure" if name == "Rendering Failure" else name[0].lower() + name[1:]] = detail
    return {"MessageId": f"sns-{name}", "Message": json.dumps(event)}


S, E = DeliveryStatus, ErrorCode
# event type, its object, delivery status, normalized error, provider code
EVENTS = [
    ("Send", {}, S.SENT, None, None),
    ("Delivery", {"timestamp": "2026-11-29T12:00:01.000Z"}, S.DELIVERED, None, None),
    ("Bounce", {"bounceType": "Permanent", "bounceSubType": "General"}, S.BOUNCED, E.INVALID_EMAIL, "Permanent/General"),  # noqa: E501
    ("Bounce", {"bounceType": "Permanent", "bounceSubType": "Suppressed"}, S.BOUNCED, E.RECIPIENT_UNSUBSCRIBED, "Permanent/Suppressed"),  # noqa: E501
    ("Bounce", {"bounceType": "Transient", "bounceSubType": "MailboxFull"}, S.BOUNCED, E.TEMPORARY_ERROR, "Transient/MailboxFull"),  # noqa: E501
    ("Bounce", {"bounceType": "Undetermined"}, S.BOUNCED, E.PERMANENT_ERROR, "Undetermined"),
    ("Complaint", {"complaintFeedbackType": "abuse"}, None, E.RECIPIENT_UNSUBSCRIBED, "abuse"),
    ("Reject", {"reason": "Bad content"}, S.UNDELIVERED, E.PERMANENT_ERROR, None),
    ("DeliveryDelay", {"delayType": "MailboxFull"}, S.DEFERRED, E.TEMPORARY_ERROR, "MailboxFull"),
    ("Rendering Failure", {"errorMessage": "missing"}, S.UNDELIVERED, E.PERMANENT_ERROR, None),
    ("Open", {}, S.READ, None, None),
    ("Subscription", {}, None, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "detail", "status", "error", "code"), EVENTS)
def test_each_ses_event_type(
    name: str, detail: dict[str, Any], status: DeliveryStatus | None, error: ErrorCode | None, code: str | None
) -> None:
    event = ses_webhook.event(_event(name, detail))
    assert (event.raw_status, event.status, event.error_code, event.provider_code) == (name, status, error, code)
    assert (event.provider_message_id, event.outbound_id, event.event_id) == ("0100-m", 42, f"sns-{name}")
    assert event.channel is Channel.EMAIL


def test_an_identity_notification_reads_like_an_event() -> None:
    envelope = _event("Delivery", {})
    message = json.loads(envelope["Message"])
    message["notificationType"] = message.pop("eventType")
    event = ses_webhook.event(envelope | {"Message": json.dumps(message)})
    assert event.status is DeliveryStatus.DELIVERED


@pytest.mark.parametrize(
    "envelope",
    [
        {"MessageId": "x", "Message": "not json"},
        {"MessageId": "x", "Message": json.dumps({"eventType": "Delivery"})},
        {"Message": _event("Delivery")["Message"]},
        _event("Delivery", outbound_id="-1"),
        _event("Delivery", {"timestamp": "noon"}),
    ],
    ids=["not-json", "no-mail", "no-id", "bad-outbound-id", "bad-time"],
)
def test_unreadable_notifications_are_malformed(envelope: dict[str, str]) -> None:
    with pytest.raises(events.MalformedEvent):
        ses_webhook.event(envelope)


def test_the_sandbox_publishes_what_the_parser_reads() -> None:
    body = ses.payload(_settings(), _message())
    for name, (event_type, detail) in sandbox.ASYNC_EVENTS.items():
        published = sandbox.ses_event(copy.deepcopy(body), "0100-m", event_type, detail, sandbox.SesConfig())
        read = ses_webhook.event({"MessageId": name, "Message": json.dumps(published)})
        assert (read.outbound_id, read.provider_message_id, read.raw_status) == (42, "0100-m", event_type), name
        assert read.error_code is not None, name


def test_the_sandbox_certificate_is_what_verify_loads() -> None:
    pem = sandbox.sns_certificate_pem()
    assert base64.b64decode(b"".join(pem.splitlines()[1:-1]))  # a PEM block
    assert sns.verify(_sns(), _certificate())


# ---- the sandbox answers as SES does ----------------------------------------------------------------
def _in_process(app: sandbox.SesSandbox, **settings: object) -> SesProvider:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return SesProvider(httpx.AsyncClient(transport=transport), _settings(**settings))


async def _refusal(provider: SesProvider, message: OutboundMessage) -> tuple[str | None, str, bool]:
    with pytest.raises(ProviderError) as raised:
        await provider.send(message)
    return raised.value.provider_code, raised.value.code.value, raised.value.retryable


async def test_the_sandbox_refuses_as_ses_does() -> None:
    app = sandbox.SesSandbox()
    app.config.rules = []
    provider = _in_process(app)
    try:
        assert await _refusal(provider, _message(template_code="unknown")) == (
            "NotFoundException",
            "PERMANENT_ERROR",
            False,
        )
        other_set = _in_process(app, configuration_set_name="nope")
        assert (await _refusal(other_set, _message()))[0] == "NotFoundException"
        unverified = _in_process(app, from_email="someone@elsewhere.example")
        assert (await _refusal(unverified, _message()))[0] == "MessageRejected"
        app.config.production_access = False  # SES's own sandbox: verified recipients only
        assert (await _refusal(provider, _message()))[0] == "MessageRejected"
        app.config.production_access = True
        app.config.max_24_hour_send = app.sent_today + 1
        assert (await provider.send(_message())).provider_message_id
        assert await _refusal(provider, _message()) == ("LimitExceededException", "QUOTA_EXCEEDED", True)
        app.config.max_24_hour_send = 10**6
        app.config.sending_enabled = False
        assert await _refusal(provider, _message()) == ("SendingPausedException", "ACCOUNT_SUSPENDED", True)
    finally:
        await provider.aclose()


def test_the_sandbox_validates_against_the_model() -> None:
    config = sandbox.SesConfig()
    body = ses.payload(_settings(), _message())
    assert sandbox.validate(body, config) is None
    refusals = {
        "unknown member": body | {"Colour": "blue"},
        "wrong type": body | {"Destination": {"ToAddresses": "ann@example.com"}},
        "no content": {k: v for k, v in body.items() if k != "Content"},
        "bad tag": body | {"EmailTags": [{"Name": "outbound id", "Value": "1"}]},
        "two contents": body | {"Content": body["Content"] | {"Raw": {"Data": b"x"}}},
    }
    for name, bad in refusals.items():
        reply = sandbox.validate(bad, config)
        assert reply is not None, name
        assert reply.headers["x-amzn-ErrorType"].startswith("BadRequestException:"), name
