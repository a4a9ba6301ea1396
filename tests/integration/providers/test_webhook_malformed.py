"""Signed but malformed receipts: each event is read on its own, the good ones are recorded, the bad
ones acknowledged and counted (outcome "malformed"), never a 5xx (providers retry those for days).
A body that is not JSON at all is a 400; a signature that is not well formed is a 403."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.store import messages
from outbound_sender.webhooks import store
from outbound_sender.webhooks.events import DeliveryEvent
from outbound_sender.webhooks.router import router
from tests.integration.providers.conftest import (
    Webhooks,
    sendgrid_headers,
    twilio_headers,
    webhook_config,
    whatsapp_headers,
)

HUGE_ID = str(2**63)


async def _recorded(db: asyncpg.Connection) -> set[str]:
    return {r["provider_event_id"] for r in await db.fetch("SELECT provider_event_id FROM outbound_delivery_event")}


def _malformed(hooks: Webhooks, provider: str) -> float:
    labels = {"provider": provider, "outcome": "malformed"}
    return hooks.metrics.registry.get_sample_value("outbound_webhook_events_total", labels) or 0


def _status(wamid: str, **fields: object) -> dict[str, object]:
    return {"id": wamid, "status": "delivered", "timestamp": "1750000000", "recipient_id": "1555", **fields}


async def test_whatsapp_bad_statuses_do_not_lose_the_good_one(webhooks: Webhooks, db: asyncpg.Connection) -> None:
    message_id = await messages.enqueue(db, NewMessage("org", Channel.WHATSAPP, "+15551234567", body="x"))
    bad = [
        _status("wamid.t", timestamp=str(10**20)),  # out of range
        _status("wamid.n\x00"),  # NUL byte
        _status("wamid.b", biz_opaque_callback_data=HUGE_ID),  # above bigint
        _status("wamid.e", errors="abc"),
        "not an object",
    ]
    good = _status("wamid.good", biz_opaque_callback_data=str(message_id))
    value = {"metadata": {"phone_number_id": "1"}, "statuses": [*bad, good]}
    payload = {"entry": ["abc", {"changes": "abc"}, {"changes": [{"field": "messages", "value": value}]}]}
    raw = json.dumps(payload).encode()
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{webhooks.url}/whatsapp", content=raw, headers=whatsapp_headers(raw))
        entry_not_a_list = b'{"entry":"abc"}'
        second = await client.post(
            f"{webhooks.url}/whatsapp", content=entry_not_a_list, headers=whatsapp_headers(entry_not_a_list)
        )
    assert (response.status_code, second.status_code) == (200, 200)
    assert await _recorded(db) == {"wamid.good:delivered"}
    row = await messages.get_message(db, message_id)
    assert row is not None
    assert row["delivery_status"] == "DELIVERED"
    assert _malformed(webhooks, "whatsapp") == len(bad) + 2 + 1


async def test_sendgrid_bad_events_do_not_lose_the_good_one(webhooks: Webhooks, db: asyncpg.Connection) -> None:
    message_id = await messages.enqueue(db, NewMessage("org", Channel.EMAIL, "ada@example.com", subject="s", body="b"))
    bad: list[object] = [
        {"event": "delivered", "sg_event_id": "t", "timestamp": 10**20},
        {"event": "delivered", "sg_event_id": "n\x00"},
        {"event": "delivered", "sg_event_id": "b", "outbound_id": HUGE_ID},
        {"event": "delivered", "sg_event_id": "x" * 5000},
        {"event": "delivered"},  # no id at all
        ["not", "an", "object"],
    ]
    good = {"event": "delivered", "sg_event_id": "good", "outbound_id": str(message_id), "reason": "a\x00b"}
    raw = json.dumps([*bad, good]).encode()
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{webhooks.url}/sendgrid/events", content=raw, headers=sendgrid_headers(raw))
    assert response.status_code == 200
    assert await _recorded(db) == {"good"}
    assert _malformed(webhooks, "sendgrid") == len(bad)


@pytest.mark.parametrize(
    ("query", "params"),
    [
        (f"?outbound_id={HUGE_ID}", {"MessageSid": "SM1", "MessageStatus": "sent"}),
        ("", {"MessageSid": "SM\x001", "MessageStatus": "sent"}),
        ("", {"MessageStatus": "sent"}),
    ],
)
async def test_a_malformed_twilio_callback_is_acknowledged(
    webhooks: Webhooks, db: asyncpg.Connection, query: str, params: dict[str, str]
) -> None:
    url = f"{webhooks.url}/twilio/status{query}"
    async with httpx.AsyncClient() as client:
        response = await client.post(url, content=urlencode(params), headers=twilio_headers(url, params))
    assert response.status_code == 200
    assert await _recorded(db) == set()
    assert _malformed(webhooks, "twilio") == 1


async def test_an_unparseable_body_is_a_400(webhooks: Webhooks) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    async with httpx.AsyncClient() as client:
        for path, raw in [("/sendgrid/events", nested), ("/whatsapp", nested), ("/whatsapp", b"\xff{")]:
            headers = sendgrid_headers(raw) if "sendgrid" in path else whatsapp_headers(raw)
            assert (await client.post(f"{webhooks.url}{path}", content=raw, headers=headers)).status_code == 400


@pytest.mark.parametrize("value", ["sha256=é".encode(), "é".encode(), b"sha256=\xff" * 9])
async def test_a_signature_header_that_is_not_ascii_is_a_403(webhooks: Webhooks, value: bytes) -> None:
    raw = b'{"entry": []}'
    async with httpx.AsyncClient() as client:
        meta = await client.post(f"{webhooks.url}/whatsapp", content=raw, headers={b"x-hub-signature-256": value})
        twilio = await client.post(
            f"{webhooks.url}/twilio/status", content=b"MessageSid=SM1", headers={b"x-twilio-signature": value}
        )
        sendgrid = await client.post(
            f"{webhooks.url}/sendgrid/events",
            content=b"[]",
            headers={
                b"x-twilio-email-event-webhook-signature": value,
                b"x-twilio-email-event-webhook-timestamp": value,
            },
        )
    assert (meta.status_code, twilio.status_code, sendgrid.status_code) == (403, 403, 403)


Receive = Callable[[], Awaitable[dict[str, object]]]


async def _asgi_post(receive: Receive, headers: list[tuple[bytes, bytes]]) -> list[int]:
    """POST /webhooks/whatsapp straight through ASGI; the response statuses started."""
    app = FastAPI()
    app.include_router(router(webhook_config(), lambda: pytest.fail("nothing may reach the database")))
    started: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/whatsapp",
        "raw_path": b"/webhooks/whatsapp",
        "query_string": b"",
        "headers": [(b"host", b"test"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return started


async def test_a_chunked_body_over_the_limit_is_refused_while_it_streams() -> None:
    """No Content-Length: the limit must hold on the bytes received, not after reading them all.
    Driven through ASGI, to count how much of the body the endpoint pulled before answering."""
    pulled, chunk = 0, b" " * (1 << 20)  # 400 chunks of 1 MiB offered, the limit is 5 MB

    async def receive() -> dict[str, object]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < 400}

    assert await _asgi_post(receive, [(b"transfer-encoding", b"chunked")]) == [413]
    assert pulled <= 6, f"the endpoint read {pulled} MiB before refusing"


async def test_a_client_gone_mid_body_is_not_a_server_error() -> None:
    messages_: list[dict[str, object]] = [
        {"type": "http.request", "body": b'{"entry"', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return messages_.pop(0) if messages_ else {"type": "http.disconnect"}

    assert await _asgi_post(receive, [(b"content-length", b"100")]) == [400]


async def test_the_verification_handshake_echoes_only_a_plain_challenge(webhooks: Webhooks) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": whatsapp_sandbox.VERIFY_TOKEN}
    async with httpx.AsyncClient() as client:
        script = await client.get(f"{webhooks.url}/whatsapp", params={**params, "hub.challenge": "<script>x</script>"})
        ok = await client.get(f"{webhooks.url}/whatsapp", params={**params, "hub.challenge": "1158201444"})
        token = await client.get(
            f"{webhooks.url}/whatsapp", params={**params, "hub.verify_token": "é", "hub.challenge": "1"}
        )
    assert (script.status_code, ok.status_code, ok.text, token.status_code) == (400, 200, "1158201444", 403)


async def test_a_twilio_form_with_too_many_fields_is_refused_before_any_work(webhooks: Webhooks) -> None:
    """Parsing, sorting and signing a 5 MB form of empty fields held the event loop for seconds,
    unauthenticated. A status callback has a few dozen fields: more is refused before the parse."""
    raw = b"a=&" * 1_000_000
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{webhooks.url}/twilio/status", content=raw, headers={"x-twilio-signature": "AAAA"}
        )
    assert response.status_code == 400


async def test_an_event_the_database_refuses_does_not_take_its_batch_down(db: asyncpg.Connection) -> None:
    """Past the parser's checks (a caller building events itself): the batch is recorded event by
    event and only the refused one is left out."""

    def event(event_id: str, our_id: int | None = None) -> DeliveryEvent:
        now = dt.datetime.now(dt.UTC)
        return DeliveryEvent("whatsapp", Channel.WHATSAPP, event_id, "sent", None, None, our_id, now)

    stats = await store.record(db, [event("nul\x00"), event("good"), event("huge", 2**63)])
    assert (stats.received, stats.recorded, stats.malformed, stats.duplicates) == (3, 1, 2, 0)
    assert await _recorded(db) == {"good"}
