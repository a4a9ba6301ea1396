"""Vonage delivery receipts over real HTTP: each webhook method the account can choose (GET, form
POST, JSON POST) is recorded; forged, tampered, replayed and unsigned receipts get 403 and change
nothing; receipts of another account are dropped; each part of a long message is one receipt.
`outbound check-provider vonage` against the sandbox."""

from __future__ import annotations

import time

import asyncpg
import httpx
import pytest

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.providers.vonage import VonageSettings, signature
from outbound_sender.sandboxes import vonage as vonage_sandbox
from outbound_sender.store import messages
from outbound_sender.webhooks.router import WebhookConfig
from tests.integration.providers.conftest import CASES, Webhooks, check_provider, serve, webhook_server
from tests.integration.providers.test_conformance import outbound

SECRET = vonage_sandbox.SIGNATURE_SECRET
VONAGE = next(c for c in CASES if c.name == "vonage")


async def _message(db: asyncpg.Connection) -> int:
    return await messages.enqueue(db, NewMessage("org", Channel.SMS, "+15551234567", body="x"))


def _receipt(message_id: int, status: str = "delivered", **extra: str) -> dict[str, str]:
    fields = {
        "msisdn": "15551234567",
        "to": vonage_sandbox.FROM_NUMBER,
        "messageId": "0A0000001234567B",
        "status": status,
        "err-code": "0",
        "api-key": vonage_sandbox.API_KEY,
        "client-ref": str(message_id),
        "message-timestamp": "2026-01-01 12:00:00",
        "timestamp": str(int(time.time())),
        "nonce": "ec11dd3e-1e7f-4db5-9467-82b02cd223b9",
    } | extra
    return fields | {"sig": signature(SECRET, fields, "md5hash")}


async def _delivery(db: asyncpg.Connection, message_id: int) -> object:
    return await db.fetchval("SELECT delivery_status FROM outbound_message WHERE id = $1", message_id)


@pytest.mark.parametrize("method", ["GET", "POST", "POST-JSON"])
async def test_each_webhook_method_is_recorded(method: str, webhooks: Webhooks, db: asyncpg.Connection) -> None:
    message_id = await _message(db)
    fields = _receipt(message_id)
    url = f"{webhooks.url}/vonage/dlr"
    async with httpx.AsyncClient() as client:
        if method == "GET":
            response = await client.get(url, params=fields)
        elif method == "POST":
            response = await client.post(url, data=fields)
        else:
            response = await client.post(url, json=fields)
        again = await client.post(url, json=fields)  # Vonage retries until it gets a 200
    assert (response.status_code, again.status_code) == (200, 200)
    assert await _delivery(db, message_id) == "DELIVERED"
    assert await db.fetchval("SELECT count(*) FROM outbound_delivery_event WHERE provider = 'vonage'") == 1


async def test_forged_tampered_replayed_and_unsigned_receipts_get_403_and_change_nothing(
    webhooks: Webhooks, db: asyncpg.Connection
) -> None:
    message_id = await _message(db)
    good = _receipt(message_id)
    old = {k: v for k, v in good.items() if k != "sig"} | {"timestamp": str(int(time.time()) - 3600)}
    attempts = [
        good | {"status": "failed"},  # tampered
        good | {"client-ref": str(message_id + 1)},  # another message
        good | {"sig": "0" * 32},  # forged
        {k: v for k, v in good.items() if k != "sig"},  # unsigned
        old | {"sig": signature(SECRET, old, "md5hash")},  # well signed, an hour old: a replay
        good | {"sig": signature(SECRET, {k: v for k, v in good.items() if k != "sig"}, "sha256")},  # other method
    ]
    async with httpx.AsyncClient() as client:
        for fields in attempts:
            response = await client.post(f"{webhooks.url}/vonage/dlr", json=fields)
            assert response.status_code == 403, fields
    assert await db.fetchval("SELECT count(*) FROM outbound_delivery_event") == 0
    assert await _delivery(db, message_id) is None
    rejected = webhooks.metrics.registry.get_sample_value
    assert rejected("outbound_webhook_events_total", {"provider": "vonage", "outcome": "rejected"}) == len(attempts)


async def test_without_a_signature_secret_every_receipt_is_refused(db_dsn: str, db: asyncpg.Connection) -> None:
    message_id = await _message(db)
    async with webhook_server(db_dsn, WebhookConfig()) as server, httpx.AsyncClient() as client:
        response = await client.post(f"{server.url}/vonage/dlr", json=_receipt(message_id))
    assert response.status_code == 403
    assert await db.fetchval("SELECT count(*) FROM outbound_delivery_event") == 0


async def test_a_receipt_of_another_account_is_dropped(db_dsn: str, db: asyncpg.Connection) -> None:
    message_id = await _message(db)
    config = WebhookConfig(accounts={"vonage": VonageSettings(signature_secret=SECRET, api_key=vonage_sandbox.API_KEY)})
    async with webhook_server(db_dsn, config) as server, httpx.AsyncClient() as client:
        foreign = await client.post(f"{server.url}/vonage/dlr", json=_receipt(message_id, **{"api-key": "other123"}))
        ours = await client.post(f"{server.url}/vonage/dlr", json=_receipt(message_id, "accepted"))
        sample = server.metrics.registry.get_sample_value
        dropped = sample("outbound_webhook_events_total", {"provider": "vonage", "outcome": "foreign_account"})
    assert (foreign.status_code, ours.status_code, dropped) == (200, 200, 1)
    assert await _delivery(db, message_id) == "SENT"


@pytest.mark.parametrize("method", ["POST", "POST-JSON"])
async def test_a_long_message_is_sent_in_parts_and_each_part_reports(
    method: str, webhooks: Webhooks, db: asyncpg.Connection
) -> None:
    """The sandbox splits 400 GSM characters into three parts; their six receipts (accepted and
    delivered each) all find the message through client-ref."""
    app = vonage_sandbox.VonageSandbox()
    app.config.rules = []
    app.config.webhook_method = method  # type: ignore[assignment]
    message_id = await messages.enqueue(db, NewMessage("org", Channel.SMS, VONAGE.recipient, body="y" * 400))
    async with serve(app) as url:
        provider = VONAGE.provider(url, webhooks=webhooks.url)
        try:
            result = await provider.send(outbound(VONAGE, message_id, body="y" * 400))
        finally:
            await provider.aclose()
        await app.webhooks.drain(timeout=20)
    assert app.webhooks.sent == {"200": 6}
    rows = await db.fetch(
        "SELECT provider_message_id, raw_status FROM outbound_delivery_event WHERE outbound_message_id = $1", message_id
    )
    assert len(rows) == 6
    assert len({r["provider_message_id"] for r in rows}) == 3
    assert result.provider_message_id in {r["provider_message_id"] for r in rows}
    assert await _delivery(db, message_id) == "DELIVERED"


async def test_check_provider_reads_the_balance_and_sends_a_test_message() -> None:
    """Passes with the account's credentials (a signed balance read, then a real send); says
    AUTH_FAILED with another signature secret and QUOTA_EXCEEDED at zero credit. The printed URL
    never carries a credential."""
    app = vonage_sandbox.VonageSandbox()
    app.config.rules = []
    async with serve(app) as url:
        ok = await check_provider("vonage", "--base-url", url, "--send-to", "+14155552671", env={})
        app.config.balance = 0.0
        broke = await check_provider("vonage", "--base-url", url, env={})
        app.config.balance = 10.0
        wrong = await check_provider(
            "vonage", "--base-url", url, env={"VONAGE_SIGNATURE_SECRET": "another-secret-0000"}
        )
    code, lines = ok
    assert code == 0, lines
    assert [line.split()[:3] for line in lines] == [
        ["OK", "provider=vonage", "step=credentials"],
        ["OK", "provider=vonage", "step=send"],
    ]
    assert app.stats["accepted"] == 1
    assert (broke[0], "result=QUOTA_EXCEEDED" in broke[1][0]) == (1, True)
    assert (wrong[0], "http=401" in wrong[1][0], "result=AUTH_FAILED" in wrong[1][0]) == (1, True, True)
    for line in ok[1] + broke[1] + wrong[1]:
        assert "sig=" not in line
        assert "api_secret" not in line
        assert vonage_sandbox.SIGNATURE_SECRET not in line
