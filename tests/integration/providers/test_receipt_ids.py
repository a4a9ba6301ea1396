"""A SendGrid answer without X-Message-Id: the delivery receipt, found by the custom argument the send
carried (outbound_id), settles the message and gives it its provider id."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import httpx
import pytest

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.metrics import Metrics
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.store import messages
from outbound_sender.webhooks import sendgrid as sendgrid_webhook
from outbound_sender.worker.dispatch import Dispatcher
from tests.integration.providers.conftest import CASES, Webhooks, point_webhooks, serve
from tests.integration.providers.test_pipeline import worker

QUERY = "SELECT status, delivery_status, provider_message_id FROM outbound_message WHERE id = $1"


class WithoutMessageId:
    """An ASGI wrapper that drops X-Message-Id from every answer (a 202 left bare)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def strip(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message["headers"] if k.lower() != b"x-message-id"]
            await send(message)

        await self.app(scope, receive, strip)


async def _row(db: asyncpg.Connection, message_id: int) -> asyncpg.Record:
    row = await db.fetchrow(QUERY, message_id)
    assert row is not None
    return row


async def _email(db: asyncpg.Connection) -> int:
    return await messages.enqueue(db, NewMessage("org", Channel.EMAIL, "ann@example.com", body="b", subject="s"))


async def test_a_202_without_x_message_id_is_settled_by_the_receipt_through_the_pipeline(
    db_dsn: str, db: asyncpg.Connection, webhooks: Webhooks
) -> None:
    app = sendgrid_sandbox.SendGridSandbox()
    point_webhooks(app, webhooks.url)
    app.config.webhook_delay_ms = 1000  # the send's result is recorded first
    case = next(c for c in CASES if c.name == "sendgrid")
    async with serve(WithoutMessageId(app)) as url:
        metrics = Metrics()
        message_id = await _email(db)
        async with worker(db_dsn, Dispatcher([case.provider(url)], metrics=metrics), metrics):
            await messages.wait_final(db, message_id, timeout=30)
            async with asyncio.timeout(30):
                while (await _row(db, message_id))["delivery_status"] != "DELIVERED":
                    await asyncio.sleep(0.05)
    row = await _row(db, message_id)
    assert row["status"] == "SENT"
    assert row["provider_message_id"], "the receipt's sg_message_id was not stored"


@pytest.mark.parametrize("carrier", ["unique_args", "custom_args"])
async def test_a_receipt_carrying_our_id_in_an_arguments_object_finds_its_message(
    db: asyncpg.Connection, webhooks: Webhooks, carrier: str
) -> None:
    """SendGrid's reference lists the custom arguments as an object of the event too: a sent e-mail
    with no provider id (a bare 202) is found by it, not left unmatched."""
    message_id = await _email(db)
    await db.execute("UPDATE outbound_message SET status = 'SENT', provider = 'sendgrid' WHERE id = $1", message_id)
    receipt = {
        "event": "delivered",
        "email": "ann@example.com",
        "timestamp": 1750000000,
        "sg_event_id": "ev-1",
        "sg_message_id": "aBcD1234.filterdrecv-1-0",
        carrier: {"outbound_id": str(message_id)},
    }
    raw = json.dumps([receipt]).encode()
    stamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "x-twilio-email-event-webhook-signature": sendgrid_webhook.sign(sendgrid_sandbox.signing_key(), raw, stamp),
        "x-twilio-email-event-webhook-timestamp": stamp,
    }
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{webhooks.url}/sendgrid/events", content=raw, headers=headers)
    assert response.status_code == 200
    row = await _row(db, message_id)
    assert (row["delivery_status"], row["provider_message_id"]) == ("DELIVERED", "aBcD1234")
