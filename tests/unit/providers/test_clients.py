"""The three clients' requests on the wire (httpx.MockTransport), success parsing, transport failures."""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import AmbiguousSendError, ProviderError, TemporaryError
from outbound_sender.providers import http
from outbound_sender.providers.base import Provider
from outbound_sender.providers.sendgrid import SendGridProvider
from outbound_sender.providers.twilio import TwilioProvider
from outbound_sender.providers.whatsapp import WhatsAppProvider, components
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox

Handler = Callable[[httpx.Request], httpx.Response]


def msg(channel: Channel, to: str, **extra: object) -> OutboundMessage:
    return OutboundMessage(77, "org", channel, to, "lease", 1, 1, 5, **extra)  # type: ignore[arg-type]


def client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def twilio(handler: Handler) -> TwilioProvider:
    settings = twilio_sandbox.account("https://api.twilio.test")
    return TwilioProvider(client(handler), settings, callback_base="https://hooks.example.com/webhooks")


async def test_twilio_request_is_form_encoded_with_basic_auth_and_callback() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"sid": "SM" + "0" * 32, "status": "accepted"})

    result = await twilio(handler).send(msg(Channel.SMS, "+15551234567", body="hello"))
    request = seen[0]
    assert request.url.path == f"/2010-04-01/Accounts/{twilio_sandbox.ACCOUNT_SID}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    user_pass = f"{twilio_sandbox.ACCOUNT_SID}:{twilio_sandbox.AUTH_TOKEN}".encode()
    assert request.headers["authorization"] == "Basic " + base64.b64encode(user_pass).decode()
    form = parse_qs(request.content.decode())
    assert form == {
        "To": ["+15551234567"],
        "MessagingServiceSid": [twilio_sandbox.MESSAGING_SERVICE_SID],
        "Body": ["hello"],
        "StatusCallback": ["https://hooks.example.com/webhooks/twilio/status?outbound_id=77"],
    }
    assert (result.provider_message_id, result.http_status) == ("SM" + "0" * 32, 201)


async def test_sendgrid_request_is_json_with_bearer_and_our_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, headers={"X-Message-Id": "abc123"})

    provider = SendGridProvider(client(handler), sendgrid_sandbox.account("https://api.sendgrid.test"))
    template = msg(Channel.EMAIL, "a@example.com", template_code="d-" + "1" * 32, template_params={"n": 1})
    result = await provider.send(template)
    body = json.loads(seen[0].content)
    assert seen[0].headers["authorization"] == f"Bearer {sendgrid_sandbox.API_KEY}"
    assert body["personalizations"] == [
        {
            "to": [{"email": "a@example.com"}],
            "custom_args": {"outbound_id": "77"},
            "dynamic_template_data": {"n": 1},
        }
    ]
    assert body["template_id"] == "d-" + "1" * 32
    assert "content" not in body
    assert result.provider_message_id == "abc123"
    await provider.send(msg(Channel.EMAIL, "a@example.com", subject="S", body="B"))
    plain = json.loads(seen[1].content)
    assert (plain["subject"], plain["content"]) == ("S", [{"type": "text/plain", "value": "B"}])


async def test_whatsapp_template_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"messaging_product": "whatsapp", "messages": [{"id": "wamid.A"}]})

    provider = WhatsAppProvider(client(handler), whatsapp_sandbox.account("https://graph.test"))
    message = msg(
        Channel.WHATSAPP,
        "+15551234567",
        template_code="appointment_reminder",
        template_language="de",
        template_params={"body": ["Ann", "10:00"]},
    )
    result = await provider.send(message)
    assert seen[0].url.path == f"/v23.0/{whatsapp_sandbox.PHONE_NUMBER_ID}/messages"
    assert seen[0].headers["authorization"] == f"Bearer {whatsapp_sandbox.ACCESS_TOKEN}"
    body = json.loads(seen[0].content)
    assert body["biz_opaque_callback_data"] == "77"
    assert body["template"] == {
        "name": "appointment_reminder",
        "language": {"code": "de", "policy": "deterministic"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "10:00"}],
            }
        ],
    }
    assert result.provider_message_id == "wamid.A"


def test_whatsapp_components_forms() -> None:
    raw = [{"type": "button", "sub_type": "url", "index": "0", "parameters": []}]
    assert components({"components": raw}) == raw
    named = components({"header": ["H"], "name": "Ann"})
    assert named[0] == {"type": "header", "parameters": [{"type": "text", "text": "H"}]}
    assert named[1]["parameters"] == [{"type": "text", "parameter_name": "name", "text": "Ann"}]


def _raiser(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    ("error", "ambiguous"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow connect"), False),
        (httpx.PoolTimeout("pool"), False),
        (httpx.ReadTimeout("no answer"), True),
        (httpx.WriteTimeout("stuck"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.ReadError("reset"), True),
    ],
)
async def test_transport_failures(error: Exception, ambiguous: bool) -> None:
    with pytest.raises(TemporaryError) as raised:
        await twilio(_raiser(error)).send(msg(Channel.SMS, "+15551234567", body="x"))
    assert isinstance(raised.value, AmbiguousSendError) is ambiguous
    assert raised.value.code is ErrorCode.TEMPORARY_ERROR
    if ambiguous:
        assert raised.value.retry_after == 30.0


async def test_provider_errors_are_logged_at_error_with_the_provider_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"error": {"message": "(#131026) Message undeliverable", "code": 131026}}
    provider: Provider = WhatsAppProvider(
        client(lambda _r: httpx.Response(400, json=body)), whatsapp_sandbox.account("https://graph.test")
    )
    with caplog.at_level(logging.ERROR), pytest.raises(ProviderError):
        await provider.send(msg(Channel.WHATSAPP, "+15551234567", body="x"))
    record = caplog.records[-1]
    assert record.levelno == logging.ERROR
    assert record.name == "provider.WhatsApp"
    assert "WhatsApp" in record.getMessage()


def test_retry_after_forms() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 120, usegmt=True)
    assert http.retry_after(httpx.Headers({"Retry-After": "5"})) == 5.0
    hint = http.retry_after(httpx.Headers({"Retry-After": date}), now=now)
    assert hint is not None
    assert 119 <= hint <= 121
    assert http.retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert http.rate_limit_reset(httpx.Headers({"X-RateLimit-Reset": str(int(now) - 5)}), now=now) == 1.0


def test_missing_credentials_are_refused_at_construction() -> None:
    from outbound_sender.providers.twilio import TwilioSettings

    with pytest.raises(ValueError, match="TWILIO_ACCOUNT_SID"):
        TwilioProvider(client(lambda _r: httpx.Response(201)), TwilioSettings.model_validate({}))
