"""What Sentry receives from the running API carries no secret and no recipient.

Before the fix, a 500 under /v1 sent the caller's whole API key (request scope in the frame locals)
and a webhook error sent the WhatsApp app secret (a local of the signature check). Here the API is
served by uvicorn with real keys and a configured webhook secret, Sentry is on with a local transport,
and the serialized envelopes are searched for every secret and recipient.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
import sentry_sdk

from outbound_sender.observability.sentry import SentrySettings, setup_sentry
from outbound_sender.providers.twilio import TwilioSettings
from outbound_sender.providers.whatsapp import WhatsAppSettings
from outbound_sender.store import message_api
from outbound_sender.webhooks import whatsapp as whatsapp_webhook
from outbound_sender.webhooks.router import WebhookConfig, router
from tests.integration.api.conftest import EMAIL, SMS, Api, api_settings, serving
from tests.unit.observability.test_sentry import DSN, CaptureTransport

APP_SECRET = "wa-app-secret-5f0c2b9e1d7a4c63"
VERIFY_TOKEN = "wa-verify-token-8d1e3f"
TWILIO_TOKEN = "twilio-auth-token-0a9b8c7d6e5f"
PHONE = SMS["to"]
ADDRESS = EMAIL["to"]


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureTransport]:
    monkeypatch.setenv("WHATSAPP_APP_SECRET", APP_SECRET)  # the process's own secret settings
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    logger = logging.getLogger("OutboundMessageService")
    level = logger.level
    logger.setLevel(logging.INFO)
    capture = CaptureTransport()
    assert setup_sentry("api", SentrySettings(dsn=DSN), transport=capture)
    try:
        yield capture
    finally:
        logger.setLevel(level)
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        sentry_sdk.get_isolation_scope().remove_tag("worker_type")


def _assert_clean(raw: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in raw, f"{secret[:12]}… reached Sentry"


async def test_a_500_under_v1_sends_no_api_key_and_no_recipient(
    db_dsn: str, transport: CaptureTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_create(*_args: object, **_kwargs: object) -> None:
        logging.getLogger("OutboundMessageService").info(f"inserting for {PHONE} and {ADDRESS}")  # a breadcrumb
        raise RuntimeError(f"insert failed for {PHONE} / {ADDRESS}")

    async def failing_list(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("planner gave up")

    monkeypatch.setattr(message_api, "create_one", failing_create)
    monkeypatch.setattr(message_api, "list_page", failing_list)
    async with serving(db_dsn, api_settings()) as api, api.client() as client:
        created = await client.post(
            "/v1/messages", json=SMS, headers={"Cookie": "session=cookie-value-77", "X-Api-Key": api.other_token}
        )
        listed = await client.get("/v1/messages", params={"correlation_id": "c-1"})
        assert (created.status_code, listed.status_code) == (500, 500)
        assert created.json()["error"]["code"] == "internal_error"
    events = transport.events()
    assert len(events) >= 2, "each 500 is an event"
    assert any(e.get("exception") for e in events)
    raw = transport.raw()
    key_secret = api.token.rsplit("_", 1)[1]
    _assert_clean(raw, [api.token, key_secret, api.other_token, "cookie-value-77", PHONE, PHONE[1:], ADDRESS])
    key_id = api.token.split("_")[1]
    assert f"obk_{key_id}_" not in raw or f"obk_{key_id}_[Filtered]" in raw
    assert '"vars"' not in raw, "no frame local variables are sent"


async def test_a_webhook_error_sends_no_provider_secret(
    db_dsn: str, transport: CaptureTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify = whatsapp_webhook.verify

    def failing_verify(app_secret: str, body: bytes, header: str | None) -> bool:
        verify(app_secret, body, header)  # the secret is a local of this frame, as in hmac's own error
        raise TypeError("comparing strings with non-ASCII characters is not supported")

    monkeypatch.setattr(whatsapp_webhook, "verify", failing_verify)
    config = WebhookConfig(
        accounts={
            "twilio": TwilioSettings(auth_token=TWILIO_TOKEN),
            "whatsapp": WhatsAppSettings(app_secret=APP_SECRET, verify_token=VERIFY_TOKEN),
        }
    )
    body = b'{"object": "whatsapp_business_account", "entry": []}'
    signature = whatsapp_webhook.sign(APP_SECRET, body)
    served: list[Api] = []
    webhooks = router(config, lambda: served[0].app.state.api.pool)
    async with serving(db_dsn, api_settings(), extra_routers=[webhooks]) as api:
        served.append(api)
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            failed = await client.post("/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": signature})
            handshake = await client.get(
                "/webhooks/whatsapp",
                params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"},
            )
    assert failed.status_code == 500
    assert handshake.status_code == 200
    assert transport.events(), "the webhook error is an event"
    raw = transport.raw()
    _assert_clean(raw, [APP_SECRET, VERIFY_TOKEN, TWILIO_TOKEN, signature.removeprefix("sha256=")])
    assert '"vars"' not in raw
