"""Amazon SES delivery events over real HTTP, as SNS delivers them: the subscription handshake is
confirmed for our topic only; forged, tampered, unsigned, replayed notifications and those signed
with a certificate from anywhere but SNS get 403 and change nothing; a notification SNS delivers
twice is recorded once. `outbound check-provider ses` against the sandbox (SigV4 checked)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.providers.ses import SesProvider, SesSettings
from outbound_sender.providers.transport import provider_client
from outbound_sender.sandboxes import ses as sandbox
from outbound_sender.store import messages
from outbound_sender.webhooks import sns
from tests.integration.providers.conftest import (
    CASES,
    LOOPBACK,
    Webhooks,
    check_provider,
    http_client,
    serve,
    webhook_config,
    webhook_server,
)
from tests.integration.providers.test_conformance import outbound
from tests.integration.test_run import API_HOWTO, outbound_run
from tests.processes import read_until

TOPIC = sandbox.SNS_TOPIC_ARN
SES = next(c for c in CASES if c.name == "ses")


@pytest.fixture
async def sandbox_url() -> AsyncIterator[str]:
    """The SES sandbox, serving its SNS certificate and SubscribeURLs."""
    app = sandbox.SesSandbox()
    async with serve(app) as url:
        yield url


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _signed(message: dict[str, str], cert_base: str, version: str = "1") -> dict[str, str]:
    message = message | {"SignatureVersion": version, "SigningCertURL": cert_base + sandbox.CERT_PATH}
    return message | {"Signature": sns.sign(message, sandbox.sns_signing_key(), version)}


def _notification(
    cert_base: str, message_id: int, event: str = "Delivery", version: str = "1", **fields: str
) -> dict[str, str]:
    ses_event: dict[str, Any] = {
        "eventType": event,
        "mail": {"messageId": "0100-abc", "timestamp": _now(), "tags": {"outbound_id": [str(message_id)]}},
        event[0].lower() + event[1:]: {"timestamp": _now()},
    }
    message = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps(ses_event),
        "Timestamp": _now(),
    } | fields
    return _signed(message, cert_base, version)


async def _post(url: str, message: dict[str, str]) -> int:
    headers = {"content-type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": message.get("Type", "")}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/ses/sns", content=orjson.dumps(message), headers=headers)
    return response.status_code


async def _message(db: asyncpg.Connection) -> int:
    return await messages.enqueue(db, NewMessage("org", Channel.EMAIL, "ann@example.com", body="x", subject="s"))


def _rejected(webhooks: Webhooks) -> float | None:
    sample = webhooks.metrics.registry.get_sample_value
    return sample("outbound_webhook_events_total", {"provider": "ses", "outcome": "rejected"})


async def test_a_notification_delivered_twice_is_recorded_once(
    webhooks: Webhooks, db: asyncpg.Connection, sandbox_url: str
) -> None:
    message_id = await _message(db)
    notification = _notification(sandbox_url, message_id, version="2")  # SHA256withRSA
    assert (await _post(webhooks.url, notification), await _post(webhooks.url, notification)) == (200, 200)
    assert await db.fetchval("SELECT delivery_status FROM outbound_message WHERE id = $1", message_id) == "DELIVERED"
    assert await db.fetchval("SELECT count(*) FROM outbound_delivery_event WHERE provider = 'ses'") == 1


async def test_forged_tampered_unsigned_replayed_and_foreign_notifications_get_403(
    webhooks: Webhooks, db: asyncpg.Connection, sandbox_url: str
) -> None:
    message_id = await _message(db)
    good = _notification(sandbox_url, message_id)
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    unsigned = {k: v for k, v in good.items() if k != "Signature"}
    other_topic = TOPIC.replace("outbound-ses-events", "someone-else")
    attempts = {
        "tampered": good | {"Message": good["Message"].replace("Delivery", "Bounce")},
        "forged": good | {"Signature": good["Signature"][::-1]},
        "unsigned": unsigned,
        "replayed": _notification(sandbox_url, message_id, Timestamp=old),  # well signed, two hours old
        "other topic": _notification(sandbox_url, message_id, TopicArn=other_topic),
        "certificate from elsewhere": good | {"SigningCertURL": "https://evil.example/SimpleNotificationService.pem"},
        "not a type": good | {"Type": "Surprise"},
    }
    for name, message in attempts.items():
        assert await _post(webhooks.url, message) == 403, name
    assert await db.fetchval("SELECT count(*) FROM outbound_delivery_event") == 0
    assert _rejected(webhooks) == len(attempts)


async def test_an_unreachable_certificate_is_a_503_for_sns_to_retry(db: asyncpg.Connection, webhooks: Webhooks) -> None:
    async with serve(sandbox.SesSandbox()) as gone:
        pass  # the port is closed again
    assert await _post(webhooks.url, _notification(gone, await _message(db))) == 503


async def test_the_subscription_is_confirmed_for_our_topic_only(db_dsn: str) -> None:
    app = sandbox.SesSandbox()
    async with serve(app) as url, webhook_server(db_dsn, webhook_config()) as server:
        endpoint = f"{server.url}/ses/sns"
        app.public_url = url  # learnt from the first API call otherwise
        assert not await app._subscribed(endpoint, TOPIC.replace("outbound-ses-events", "theirs"))
        assert app.subscribed == set()  # refused: 403, the SubscribeURL never fetched
        assert await app._subscribed(endpoint, TOPIC)
        assert app.subscribed == {endpoint}
        # A SubscribeURL off SNS's hosts is never fetched, even for our topic.
        confirmation = {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": "t" * 64,
            "TopicArn": TOPIC,
            "Message": "confirm",
            "SubscribeURL": "https://evil.example/?Action=ConfirmSubscription",
            "Timestamp": _now(),
        }
        assert await _post(server.url, _signed(confirmation, url)) == 403
    assert app.stats["subscription_confirmations"] == 2


async def test_without_a_configured_topic_every_message_is_refused(
    db_dsn: str, db: asyncpg.Connection, sandbox_url: str
) -> None:
    config = webhook_config()
    config = replace(config, accounts={**config.accounts, "ses": SesSettings(sns_certificate_url_prefixes=[LOOPBACK])})
    async with webhook_server(db_dsn, config) as server:
        assert await _post(server.url, _notification(sandbox_url, await _message(db))) == 403


async def test_check_provider_reads_the_account_and_sends_a_test_message() -> None:
    """Passes with the account's credentials (a signed GetAccount, then a real send); says
    AUTH_FAILED with another secret key and ACCOUNT_SUSPENDED when sending is paused. The printed
    lines never carry a credential."""
    app = sandbox.SesSandbox()
    app.config.rules = []
    async with serve(app) as url:
        ok = await check_provider("ses", "--base-url", url, "--send-to", "ann@example.com", env={})
        wrong = await check_provider("ses", "--base-url", url, env={"SES_SECRET_ACCESS_KEY": "another/secret/key"})
        app.config.sending_enabled = False
        paused = await check_provider("ses", "--base-url", url, env={})
    code, lines = ok
    assert code == 0, lines
    assert [line.split()[:3] for line in lines] == [
        ["OK", "provider=ses", "step=credentials"],
        ["OK", "provider=ses", "step=send"],
    ]
    assert app.stats["accepted"] == 1
    assert (wrong[0], "http=403" in wrong[1][0], "result=AUTH_FAILED" in wrong[1][0]) == (1, True, True)
    assert (paused[0], "result=ACCOUNT_SUSPENDED" in paused[1][0]) == (1, True)
    for line in ok[1] + wrong[1] + paused[1]:
        assert sandbox.SECRET_ACCESS_KEY not in line
        assert sandbox.SESSION_TOKEN not in line


async def test_the_workers_pooled_client_sends_requests_the_sandbox_accepts_as_signed() -> None:
    """The worker's transport (aiohttp under httpx) keeps every header SigV4 signed as signed."""
    app = sandbox.SesSandbox()
    app.config.rules = []
    async with serve(app) as url:
        provider = SesProvider(provider_client(4, connect_timeout=2, read_timeout=5), sandbox.account(url))
        try:
            results = [await provider.send(outbound(SES, message_id=n, body="héllo ✓")) for n in range(1, 4)]
        finally:
            await provider.aclose()
    assert all(r.provider_message_id for r in results)
    assert (app.stats["accepted"], app.stats["auth_failed"]) == (3, 0)


async def test_make_run_with_sendgrid_off_sends_email_through_ses_and_records_its_events(
    db_dsn: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """`outbound run` (sandbox mode) as a user starts it, SendGrid switched off: the demo e-mail goes
    out through SES (signed, checked by its sandbox), and its events come back through the SNS
    subscription the router confirmed, up to DELIVERED."""
    with outbound_run(db_dsn, tmp_path, sendgrid_enabled="false") as (process, lines):
        read_until(process, API_HOWTO, seen=lines)
        query = "SELECT provider || ':' || delivery_status FROM outbound_message WHERE channel = 'EMAIL'"
        async with asyncio.timeout(60):
            while (state := await db.fetchval(query)) != "ses:DELIVERED":
                await asyncio.sleep(0.2)
        raw = await db.fetch("SELECT raw_status FROM outbound_delivery_event WHERE provider = 'ses' ORDER BY id")
        assert process.poll() is None
    assert state == "ses:DELIVERED"
    assert [r["raw_status"] for r in raw] == ["Send", "Delivery"]


async def test_events_signed_with_signature_version_2_are_recorded(webhooks: Webhooks, db: asyncpg.Connection) -> None:
    app = sandbox.SesSandbox()
    app.config.rules = []
    app.config.signature_version = "2"  # SHA256withRSA, a topic's choice
    app.config.endpoint_url = f"{webhooks.url}/ses/sns"
    message_id = await _message(db)
    async with serve(app) as url:
        provider = SesProvider(http_client(), sandbox.account(url))
        try:
            await provider.send(outbound(SES, message_id=message_id))
        finally:
            await provider.aclose()
        query = "SELECT delivery_status FROM outbound_message WHERE id = $1"
        async with asyncio.timeout(30):
            while await db.fetchval(query, message_id) != "DELIVERED":
                await asyncio.sleep(0.05)
        await app.webhooks.drain()
    assert app.webhooks.sent == {"200": 2}
