"""Webhook payloads -> DeliveryEvent (shapes per shared/providers.md, checked against Meta's and
SendGrid's published examples)."""

from __future__ import annotations

from collections.abc import Mapping

from outbound_sender.domain import DeliveryStatus as D
from outbound_sender.domain import ErrorCode as E
from outbound_sender.webhooks import events
from outbound_sender.webhooks import sendgrid as sendgrid_webhook
from outbound_sender.webhooks import twilio as twilio_webhook
from outbound_sender.webhooks import whatsapp as whatsapp_webhook


def test_twilio_undelivered_carries_the_normalized_error() -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003", "To": "+1555"}
    event = twilio_webhook.event(params, "42")
    assert (event.event_id, event.status, event.outbound_id) == ("SM1:undelivered", D.UNDELIVERED, 42)
    assert (event.error_code, event.provider_code) == (E.TEMPORARY_ERROR, "30003")


def test_twilio_intermediate_states_do_not_move_the_message() -> None:
    for raw in ("queued", "accepted", "sending", "canceled"):
        assert twilio_webhook.event({"MessageSid": "SM1", "MessageStatus": raw}, None).status is None
    assert twilio_webhook.event({"SmsSid": "SM1", "SmsStatus": "delivered"}, None).status is D.DELIVERED


def test_sendgrid_events_map_and_strip_the_message_id_suffix() -> None:
    batch: list[dict[str, object]] = [
        {
            "event": "processed",
            "sg_event_id": "e1",
            "sg_message_id": "ABC.filter1",
            "outbound_id": "7",
            "timestamp": 1600000000,
        },
        {"event": "delivered", "sg_event_id": "e2", "sg_message_id": "ABC.filter1", "outbound_id": "7"},
        {"event": "bounce", "type": "bounce", "sg_event_id": "e3", "reason": "550 no such user"},
        {"event": "bounce", "type": "blocked", "sg_event_id": "e4"},
        {"event": "dropped", "reason": "Unsubscribed Address", "sg_event_id": "e5"},
        {"event": "dropped", "reason": "Bounced Address", "sg_event_id": "e6"},
        {"event": "deferred", "sg_event_id": "e7"},
        {"event": "spamreport", "sg_event_id": "e8"},
        {"event": "open", "sg_event_id": "e9"},
    ]
    got = sendgrid_webhook.events(batch).events
    assert got[0].provider_message_id == "ABC"
    assert got[0].outbound_id == 7
    assert got[0].occurred_at.timestamp() == 1600000000
    assert [(e.status, e.error_code) for e in got] == [
        (D.SENT, None),
        (D.DELIVERED, None),
        (D.BOUNCED, E.INVALID_EMAIL),
        (D.DEFERRED, E.TEMPORARY_ERROR),
        (D.BOUNCED, E.RECIPIENT_UNSUBSCRIBED),
        (D.BOUNCED, E.INVALID_EMAIL),
        (D.DEFERRED, E.TEMPORARY_ERROR),
        (None, E.RECIPIENT_UNSUBSCRIBED),
        (D.READ, None),
    ]


def _whatsapp(status: Mapping[str, object]) -> dict[str, object]:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "1"}, "statuses": [status]}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}],
    }


def test_whatsapp_statuses() -> None:
    read = {
        "id": "wamid.X",
        "status": "read",
        "timestamp": "1750857384",
        "recipient_id": "1555",
        "biz_opaque_callback_data": "9",
    }
    event = whatsapp_webhook.events(_whatsapp(read)).events[0]
    assert (event.event_id, event.status, event.outbound_id) == ("wamid.X:read", D.READ, 9)
    assert event.occurred_at.timestamp() == 1750857384


def test_whatsapp_failed_status_is_normalized() -> None:
    failed = {
        "id": "wamid.Y",
        "status": "failed",
        "timestamp": "1",
        "recipient_id": "1",
        "errors": [{"code": 131050, "title": "stopped marketing", "error_data": {"details": "x"}}],
    }
    event = whatsapp_webhook.events(_whatsapp(failed)).events[0]
    assert (event.status, event.error_code, event.provider_code) == (
        D.UNDELIVERED,
        E.RECIPIENT_UNSUBSCRIBED,
        "131050",
    )


def test_whatsapp_incoming_messages_are_not_statuses() -> None:
    value = {"messages": [{"from": "1", "id": "wamid.Z", "type": "text"}]}
    payload = {"entry": [{"changes": [{"field": "messages", "value": value}]}]}
    assert whatsapp_webhook.events(payload) == events.Parsed()


def test_delivery_rank_orders_states() -> None:
    assert D.SENT.rank < D.DELIVERED.rank < D.READ.rank
    assert D.UNDELIVERED.rank == D.BOUNCED.rank == D.DELIVERED.rank


def test_each_event_is_read_on_its_own() -> None:
    batch: list[object] = [
        {"event": "delivered", "sg_event_id": "ok", "timestamp": 1600000000.0},  # a float second is fine
        {"event": "delivered", "sg_event_id": "late", "timestamp": 1600000000.5},
        {"event": "delivered", "sg_event_id": "big", "outbound_id": 2**63},
        {"event": "delivered", "sg_event_id": "nul\x00"},
        "text",
    ]
    parsed = sendgrid_webhook.events(batch)
    assert [e.event_id for e in parsed.events] == ["ok"]
    assert parsed.events[0].occurred_at.timestamp() == 1600000000
    assert parsed.malformed == [
        "timestamp is not whole seconds",
        "outbound_id is not a message id",
        "sg_event_id is not an identifier",
        "event is not an object",
    ]


def test_whatsapp_statuses_carry_the_account_and_bad_shapes_are_counted() -> None:
    payload = _whatsapp({"id": "wamid.A", "status": "sent", "timestamp": "1"})
    entries = payload["entry"]
    assert isinstance(entries, list)
    payload["entry"] = [*entries, "abc", {"changes": {"not": "a list"}}]
    parsed = whatsapp_webhook.events(payload)
    assert [(e.event_id, e.account) for e in parsed.events] == [("wamid.A:sent", "1")]
    assert parsed.malformed == ["entry item is not an object", "changes is not a list"]
