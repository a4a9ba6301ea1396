"""The webhook endpoints over real HTTP: forged and tampered requests get 403 and change nothing;
duplicates and out-of-order receipts never move a message backwards; Meta's GET handshake."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.store import messages
from outbound_sender.webhooks import sendgrid as sendgrid_webhook
from outbound_sender.webhooks import twilio as twilio_webhook
from outbound_sender.webhooks import whatsapp as whatsapp_webhook
from tests.integration.providers.conftest import Webhooks


async def _message(db: asyncpg.Connection, channel: Channel = Channel.SMS) -> int:
    return await messages.enqueue(db, NewMessage("org", channel, "+15551234567", body="x"))


def _twilio_request(url: str, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": twilio_webhook.sign(twilio_sandbox.AUTH_TOKEN, url, params.items()),
    }
    return urlencode(params).encode(), headers


def _sendgrid_request(batch: list[dict[str, object]], timestamp: str | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(batch).encode()
    stamp = timestamp or str(int(time.time()))
    signature = sendgrid_webhook.sign(sendgrid_sandbox.signing_key(), raw, stamp)
    headers = {
        "content-type": "application/json",
        "x-twilio-email-event-webhook-signature": signature,
        "x-twilio-email-event-webhook-timestamp": stamp,
    }
    return raw, headers


def _whatsapp_request(message_id: int, status: str, wamid: str = "wamid.A") -> tuple[bytes, dict[str, str]]:
    item = {
        "id": wamid,
        "status": status,
        "timestamp": "1750000000",
        "recipient_id": "15551234567",
        "biz_opaque_callback_data": str(message_id),
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "W", "changes": [{"field": "messages", "value": {"statuses": [item]}}]}],
    }
    raw = json.dumps(payload).encode()
    return raw, {
        "content-type": "application/json",
        "x-hub-signature-256": whatsapp_webhook.sign(whatsapp_sandbox.APP_SECRET, raw),
    }


async def _snapshot(db: asyncpg.Connection, message_id: int) -> tuple[object, ...]:
    row = await db.fetchrow("SELECT * FROM outbound_message WHERE id = $1", message_id)
    events = await db.fetchval("SELECT count(*) FROM outbound_delivery_event")
    assert row is not None
    return (*row.values(), events)


async def test_forged_and_tampered_webhooks_get_403_and_change_nothing(
    webhooks: Webhooks, db: asyncpg.Connection
) -> None:
    message_id = await _message(db)
    before = await _snapshot(db, message_id)
    twilio_url = f"{webhooks.url}/twilio/status?outbound_id={message_id}"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    body, headers = _twilio_request(twilio_url, params)
    sg_body, sg_headers = _sendgrid_request(
        [{"event": "delivered", "sg_event_id": "e1", "outbound_id": str(message_id)}]
    )
    wa_body, wa_headers = _whatsapp_request(message_id, "read")
    attempts = [
        (twilio_url, body.replace(b"delivered", b"undelivered"), headers),  # tampered body
        (twilio_url + "0", body, headers),  # tampered URL (another message id)
        (twilio_url, body, {"content-type": headers["content-type"]}),  # no signature
        (twilio_url, body, {**headers, "x-twilio-signature": "AAAA"}),  # forged
        (f"{webhooks.url}/sendgrid/events", sg_body.replace(b"delivered", b"bounce"), sg_headers),
        (
            f"{webhooks.url}/sendgrid/events",
            sg_body,
            {**sg_headers, "x-twilio-email-event-webhook-timestamp": "1"},
        ),
        (f"{webhooks.url}/sendgrid/events", sg_body, {"content-type": "application/json"}),
        (f"{webhooks.url}/whatsapp", wa_body.replace(b'"read"', b'"sent"'), wa_headers),
        (f"{webhooks.url}/whatsapp", wa_body, {**wa_headers, "x-hub-signature-256": "sha256=00"}),
        (f"{webhooks.url}/whatsapp", wa_body, {"content-type": "application/json"}),
    ]
    async with httpx.AsyncClient() as client:
        for url, content, sent_headers in attempts:
            response = await client.post(url, content=content, headers=sent_headers)
            assert response.status_code == 403, (url, content[:60])
    assert await _snapshot(db, message_id) == before
    rejected = webhooks.metrics.registry.get_sample_value
    assert sum(
        rejected("outbound_webhook_events_total", {"provider": p, "outcome": "rejected"}) or 0
        for p in ("twilio", "sendgrid", "whatsapp")
    ) == len(attempts)
    async with httpx.AsyncClient() as client:  # and the genuine ones pass
        assert (await client.post(twilio_url, content=body, headers=headers)).status_code == 200
        assert (
            await client.post(f"{webhooks.url}/sendgrid/events", content=sg_body, headers=sg_headers)
        ).status_code == 200
        assert (await client.post(f"{webhooks.url}/whatsapp", content=wa_body, headers=wa_headers)).status_code == 200


async def test_unconfigured_secrets_fail_closed(db_dsn: str, db: asyncpg.Connection) -> None:
    from fastapi import FastAPI

    from outbound_sender.store.db import create_pool
    from outbound_sender.webhooks.router import WebhookConfig, router
    from tests.integration.providers.conftest import serve

    pool = await create_pool(db_dsn)
    app = FastAPI()
    app.include_router(router(WebhookConfig(), pool))
    message_id = await _message(db)
    wa_body, _ = _whatsapp_request(message_id, "read")
    try:
        async with serve(app) as base, httpx.AsyncClient() as client:
            unsigned = await client.post(
                f"{base}/webhooks/whatsapp",
                content=wa_body,
                headers={"x-hub-signature-256": whatsapp_webhook.sign("", wa_body)},
            )
            verify = await client.get(
                f"{base}/webhooks/whatsapp",
                params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"},
            )
    finally:
        await pool.close()
    assert (unsigned.status_code, verify.status_code) == (403, 403)
    assert await db.fetchval("SELECT count(*) FROM outbound_delivery_event") == 0


async def test_whatsapp_verification_handshake(webhooks: Webhooks) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": whatsapp_sandbox.VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    async with httpx.AsyncClient() as client:
        ok = await client.get(f"{webhooks.url}/whatsapp", params=params)
        wrong = await client.get(f"{webhooks.url}/whatsapp", params={**params, "hub.verify_token": "guess"})
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert wrong.status_code == 403


@pytest.mark.parametrize(
    "order",
    [
        ["sent", "delivered", "read"],
        ["read", "delivered", "sent"],
        ["delivered", "sent", "read", "delivered"],
    ],
)
async def test_out_of_order_and_duplicate_receipts_never_move_backwards(
    webhooks: Webhooks, db: asyncpg.Connection, order: list[str]
) -> None:
    message_id = await _message(db, Channel.WHATSAPP)
    seen = []
    async with httpx.AsyncClient() as client:
        for status in [*order, *order]:  # every receipt twice: providers retry webhooks
            body, headers = _whatsapp_request(message_id, status)
            assert (await client.post(f"{webhooks.url}/whatsapp", content=body, headers=headers)).status_code == 200
            seen.append(await db.fetchval("SELECT delivery_status FROM outbound_message WHERE id = $1", message_id))
    ranks = {"SENT": 1, "DELIVERED": 2, "READ": 3}
    assert [ranks[s] for s in seen] == sorted(ranks[s] for s in seen)  # monotonic
    assert seen[-1] == "READ"
    assert await db.fetchval("SELECT count(*) FROM outbound_delivery_event") == len(set(order))
    duplicates = webhooks.metrics.registry.get_sample_value(
        "outbound_webhook_events_total", {"provider": "whatsapp", "outcome": "duplicate"}
    )
    assert duplicates == 2 * len(order) - len(set(order))


async def test_event_without_our_id_finds_the_message_by_provider_id(
    webhooks: Webhooks, db: asyncpg.Connection
) -> None:
    message_id = await _message(db)
    await db.execute(
        "UPDATE outbound_message SET provider_message_id = 'SMabc', status = 'SENT' WHERE id = $1", message_id
    )
    url = f"{webhooks.url}/twilio/status"
    body, headers = _twilio_request(url, {"MessageSid": "SMabc", "MessageStatus": "undelivered", "ErrorCode": "30005"})
    async with httpx.AsyncClient() as client:
        assert (await client.post(url, content=body, headers=headers)).status_code == 200
    row = await db.fetchrow("SELECT status, delivery_status FROM outbound_message WHERE id = $1", message_id)
    assert row is not None
    assert (row["status"], row["delivery_status"]) == ("SENT", "UNDELIVERED")
    event = await db.fetchrow("SELECT error_code, provider_code FROM outbound_delivery_event")
    assert event is not None
    assert (event["error_code"], event["provider_code"]) == ("INVALID_PHONE_NUMBER", "30005")


async def test_public_url_behind_a_proxy_is_what_twilio_signs(db_dsn: str, db: asyncpg.Connection) -> None:
    from fastapi import FastAPI

    from outbound_sender.store.db import create_pool
    from outbound_sender.webhooks.router import router
    from tests.integration.providers.conftest import serve, webhook_config

    public = "https://hooks.example.com/outbound/webhooks"
    pool = await create_pool(db_dsn)
    app = FastAPI()
    app.include_router(router(webhook_config(public), pool))
    message_id = await _message(db)
    params = {"MessageSid": "SM9", "MessageStatus": "delivered"}
    signed_public, headers = _twilio_request(f"{public}/twilio/status?outbound_id={message_id}", params)
    try:
        async with serve(app) as base, httpx.AsyncClient() as client:
            local = f"{base}/webhooks/twilio/status?outbound_id={message_id}"
            accepted = await client.post(local, content=signed_public, headers=headers)
            _, local_headers = _twilio_request(local, params)
            refused = await client.post(local, content=signed_public, headers=local_headers)
    finally:
        await pool.close()
    assert (accepted.status_code, refused.status_code) == (200, 403)
