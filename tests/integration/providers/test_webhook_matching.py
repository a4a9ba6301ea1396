"""Which message a delivery receipt may change: only one of the same provider, channel and account,
and a message waiting to retry is settled as SENT only by a receipt of the attempt still open."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest

from outbound_sender.domain import Channel, NewMessage
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.store import messages
from outbound_sender.webhooks.store import ReceiptCheck
from tests.integration.providers.conftest import (
    Webhooks,
    twilio_headers,
    webhook_config,
    webhook_server,
    whatsapp_headers,
)

SMS_SID = "SM" + "3" * 32
OTHER_ACCOUNT = "AC" + "0" * 32


@pytest.fixture
async def accounts(db_dsn: str) -> AsyncIterator[Webhooks]:
    """The webhook router knowing our Twilio AccountSid and WhatsApp phone_number_id."""
    config = webhook_config()
    sms, chat = config.accounts["twilio"], config.accounts["whatsapp"]
    ours = {
        "twilio": sms.model_copy(update={"account_sid": twilio_sandbox.ACCOUNT_SID}),
        "whatsapp": chat.model_copy(update={"phone_number_id": whatsapp_sandbox.PHONE_NUMBER_ID}),
    }
    config = dataclasses.replace(config, accounts={**config.accounts, **ours})
    async with webhook_server(db_dsn, config) as server:
        yield server


async def _waiting_for_retry(db: asyncpg.Connection, channel: Channel, providers: list[str | None]) -> int:
    """A message whose attempts (one per provider, the last one open) all ended without an answer."""
    message_id = await messages.enqueue(db, NewMessage("org", channel, "+15557654321", body="x"))
    await db.execute(
        "UPDATE outbound_message SET status = 'QUEUED', claim_count = $2, attempt_count = $2, provider = $3,"
        " error_code = 'TEMPORARY_ERROR', retry_at = now() + interval '1 hour' WHERE id = $1",
        message_id,
        len(providers),
        providers[-1],
    )
    for number, provider in enumerate(providers, start=1):
        await db.execute(
            "INSERT INTO outbound_attempt (outbound_message_id, attempt_no, channel, provider, outcome, ambiguous)"
            " VALUES ($1, $2, $3, $4, 'RETRY', true)",
            message_id,
            number,
            channel.value,
            provider,
        )
    return message_id


def _whatsapp_body(status: str, wamid: str, our_id: int | None, phone_number_id: str) -> bytes:
    item: dict[str, object] = {"id": wamid, "status": status, "timestamp": "1750000000", "recipient_id": "1555"}
    if our_id is not None:
        item["biz_opaque_callback_data"] = str(our_id)
    value = {"metadata": {"phone_number_id": phone_number_id}, "statuses": [item]}
    payload = {"entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}]}
    return json.dumps(payload).encode()


async def _post_whatsapp(
    hooks: Webhooks, status: str, wamid: str, our_id: int | None, phone: str = whatsapp_sandbox.PHONE_NUMBER_ID
) -> None:
    raw = _whatsapp_body(status, wamid, our_id, phone)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{hooks.url}/whatsapp", content=raw, headers=whatsapp_headers(raw))
    assert response.status_code == 200


async def _post_twilio(
    hooks: Webhooks, status: str, sid: str, our_id: int | None, account: str = twilio_sandbox.ACCOUNT_SID
) -> None:
    url = f"{hooks.url}/twilio/status" + (f"?outbound_id={our_id}" if our_id is not None else "")
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": account}
    async with httpx.AsyncClient() as client:
        response = await client.post(url, content=urlencode(params), headers=twilio_headers(url, params))
    assert response.status_code == 200


async def _state(db: asyncpg.Connection, message_id: int) -> tuple[object, ...]:
    row = await db.fetchrow(
        "SELECT status, delivery_status, provider, provider_message_id, retry_at, error_code"
        " FROM outbound_message WHERE id = $1",
        message_id,
    )
    assert row is not None
    return tuple(row.values())


def _outcome(hooks: Webhooks, provider: str, outcome: str) -> float:
    labels = {"provider": provider, "outcome": outcome}
    return hooks.metrics.registry.get_sample_value("outbound_webhook_events_total", labels) or 0


async def test_a_whatsapp_receipt_naming_an_sms_changes_nothing(accounts: Webhooks, db: asyncpg.Connection) -> None:
    sms = await messages.enqueue(db, NewMessage("org", Channel.SMS, "+15557654321", body="x"))
    await db.execute(
        "UPDATE outbound_message SET status = 'SENT', provider = 'twilio', provider_message_id = $2 WHERE id = $1",
        sms,
        SMS_SID,
    )
    before = await _state(db, sms)
    await _post_whatsapp(accounts, "read", SMS_SID, None)  # by provider id
    await _post_whatsapp(accounts, "read", "wamid.X", sms)  # by our id
    assert await _state(db, sms) == before
    assert _outcome(accounts, "whatsapp", "unmatched") == 2
    await _post_twilio(accounts, "delivered", SMS_SID, None)  # its own provider still moves it
    assert (await _state(db, sms))[1] == "DELIVERED"


async def test_another_providers_receipt_never_settles_a_message_waiting_to_retry(
    accounts: Webhooks, db: asyncpg.Connection
) -> None:
    sms = await _waiting_for_retry(db, Channel.SMS, ["twilio"])
    before = await _state(db, sms)
    await _post_whatsapp(accounts, "sent", "wamid.Y", sms)
    assert await _state(db, sms) == before  # still QUEUED for its retry, no wamid
    await _post_twilio(accounts, "sent", SMS_SID, sms)
    status, _, provider, provider_id, retry_at, _ = await _state(db, sms)
    assert (status, provider, provider_id, retry_at) == ("SENT", "twilio", SMS_SID, None)
    assert _outcome(accounts, "twilio", "resolved_ambiguous") == 1


async def test_a_receipt_of_an_earlier_attempt_does_not_settle_the_open_one(
    accounts: Webhooks, db: asyncpg.Connection
) -> None:
    """Attempt 1 went to Twilio, attempt 2 (the open one) to another provider of the channel: a
    Twilio receipt is about attempt 1, and says nothing of whether attempt 2 was sent."""
    sms = await _waiting_for_retry(db, Channel.SMS, ["twilio", "sandbox"])
    await _post_twilio(accounts, "sent", SMS_SID, sms)
    status, delivery, _, _, retry_at, _ = await _state(db, sms)
    assert (status, delivery) == ("QUEUED", "SENT")  # recorded and shown, not settled
    assert retry_at is not None
    assert _outcome(accounts, "twilio", "resolved_ambiguous") == 0


async def test_a_receipt_of_another_account_changes_nothing(accounts: Webhooks, db: asyncpg.Connection) -> None:
    sms = await _waiting_for_retry(db, Channel.SMS, ["twilio"])
    whatsapp = await _waiting_for_retry(db, Channel.WHATSAPP, ["whatsapp"])
    before = [await _state(db, sms), await _state(db, whatsapp)]
    await _post_twilio(accounts, "delivered", SMS_SID, sms, account=OTHER_ACCOUNT)
    await _post_whatsapp(accounts, "delivered", "wamid.Z", whatsapp, phone="999")
    assert [await _state(db, sms), await _state(db, whatsapp)] == before
    assert _outcome(accounts, "twilio", "foreign_account") == 1
    assert _outcome(accounts, "whatsapp", "foreign_account") == 1
    await _post_whatsapp(accounts, "delivered", "wamid.Z", whatsapp)
    assert (await _state(db, whatsapp))[:2] == ("SENT", "DELIVERED")


@pytest.mark.parametrize(
    ("attempts", "settles"),
    [
        (["twilio"], True),  # the open attempt went to Twilio and got no answer
        ([None], True),  # a lost lease: which provider it called is unknown
        (["twilio", "sandbox"], False),  # the open attempt went elsewhere
    ],
)
async def test_the_dispatcher_settles_a_retry_only_by_a_receipt_of_the_open_attempt(
    accounts: Webhooks, db: asyncpg.Connection, attempts: list[str | None], settles: bool
) -> None:
    """The other order: the receipt was recorded first, the retry asks before sending."""
    sms = await _waiting_for_retry(db, Channel.SMS, attempts)
    await db.execute("UPDATE outbound_message SET status = 'SENDING' WHERE id = $1", sms)  # the retry's claim
    await _post_twilio(accounts, "sent", SMS_SID, sms)
    if attempts[-1] == "sandbox":  # a definite answer: that attempt was not taken by Twilio
        await db.execute("UPDATE outbound_attempt SET ambiguous = false WHERE attempt_no = 2")
    receipts = ReceiptCheck()
    receipts.bind(accounts.pool)
    assert await receipts(sms) == (SMS_SID if settles else None)
