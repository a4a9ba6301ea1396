"""Provider delivery webhooks -> DeliveryEvent: pure parsing, one function per provider.

Each event carries a de-duplication key unique per provider (`event_id`), the normalized delivery
status (None: recorded but does not move the message, e.g. an unsubscribe after delivery), both
ways to find the message (our id carried in the send, and the provider's message id), and, for
failures, the normalized error code from the same tables the clients use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from outbound_sender.domain import DeliveryStatus, ErrorCode
from outbound_sender.providers import twilio, whatsapp
from outbound_sender.providers.sendgrid import OUR_ID


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    provider: str
    event_id: str
    raw_status: str
    status: DeliveryStatus | None
    provider_message_id: str | None
    outbound_id: int | None
    occurred_at: dt.datetime
    error_code: ErrorCode | None = None
    provider_code: str | None = None
    error_message: str | None = None


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _epoch(value: object) -> dt.datetime:
    seconds = _int(value)
    if seconds is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


# ---- Twilio ----------------------------------------------------------------------------------
TWILIO_STATUS = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.UNDELIVERED,
    "read": DeliveryStatus.READ,
}


def twilio_event(params: Mapping[str, str], outbound_id: str | None, provider: str = "twilio") -> DeliveryEvent:
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    raw = params.get("MessageStatus") or params.get("SmsStatus") or ""
    code = _int(params.get("ErrorCode"))
    error = twilio.classify(code, None)[0] if code else None
    return DeliveryEvent(
        provider=provider,
        event_id=f"{sid}:{raw}",
        raw_status=raw,
        status=TWILIO_STATUS.get(raw),
        provider_message_id=sid or None,
        outbound_id=_int(outbound_id),
        occurred_at=dt.datetime.now(dt.UTC),
        error_code=error,
        provider_code=str(code) if code else None,
    )


# ---- SendGrid --------------------------------------------------------------------------------
OPTED_OUT = ("spamreport", "unsubscribe", "group_unsubscribe")


def _sendgrid_drop(reason: str) -> ErrorCode:
    lowered = reason.lower()
    if "unsubscribe" in lowered or "spam" in lowered:
        return ErrorCode.RECIPIENT_UNSUBSCRIBED
    if "bounce" in lowered or "invalid" in lowered:
        return ErrorCode.INVALID_EMAIL
    return ErrorCode.PERMANENT_ERROR


def _sendgrid_status(event: Mapping[str, Any]) -> tuple[DeliveryStatus | None, ErrorCode | None]:
    name = str(event.get("event", ""))
    simple = {
        "processed": DeliveryStatus.SENT,
        "delivered": DeliveryStatus.DELIVERED,
        "open": DeliveryStatus.READ,
        "click": DeliveryStatus.READ,
    }
    if name in simple:
        return simple[name], None
    if name == "deferred" or (name == "bounce" and event.get("type") == "blocked"):
        return DeliveryStatus.DEFERRED, ErrorCode.TEMPORARY_ERROR
    if name == "bounce":
        return DeliveryStatus.BOUNCED, ErrorCode.INVALID_EMAIL
    if name == "dropped":
        return DeliveryStatus.BOUNCED, _sendgrid_drop(str(event.get("reason", "")))
    if name in OPTED_OUT:
        return None, ErrorCode.RECIPIENT_UNSUBSCRIBED
    return None, None


def _sendgrid_custom_arg(event: Mapping[str, Any]) -> object:
    """The outbound_id custom argument the send carried, as the event holds it: a top-level key, or
    inside its `unique_args` / `custom_args` object. It finds the message when the 202 had no
    X-Message-Id."""
    for carrier in (event, event.get("unique_args"), event.get("custom_args")):
        if isinstance(carrier, Mapping) and carrier.get(OUR_ID) is not None:
            return carrier.get(OUR_ID)
    return None


def sendgrid_events(batch: Iterable[Mapping[str, Any]], provider: str = "sendgrid") -> list[DeliveryEvent]:
    events = []
    for item in batch:
        status, error = _sendgrid_status(item)
        sg_message_id = str(item.get("sg_message_id") or "")
        detail = item.get("reason") or item.get("response")
        events.append(
            DeliveryEvent(
                provider=provider,
                event_id=str(item.get("sg_event_id") or f"{sg_message_id}:{item.get('event')}"),
                raw_status=str(item.get("event", "")),
                status=status,
                provider_message_id=sg_message_id.split(".", 1)[0] or None,
                outbound_id=_int(_sendgrid_custom_arg(item)),
                occurred_at=_epoch(item.get("timestamp")),
                error_code=error,
                provider_code=str(item.get("status")) if item.get("status") else None,
                error_message=str(detail)[:2000] if detail else None,
            )
        )
    return events


# ---- WhatsApp --------------------------------------------------------------------------------
WHATSAPP_STATUS = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.UNDELIVERED,
}


def _whatsapp_statuses(payload: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for entry in payload.get("entry") or []:
        for change in entry.get("changes") or []:
            if change.get("field", "messages") == "messages":
                yield from (change.get("value") or {}).get("statuses") or []


def _whatsapp_error(status: Mapping[str, Any]) -> tuple[ErrorCode | None, str | None, str | None]:
    errors = status.get("errors") or []
    if not errors:
        return None, None, None
    first = errors[0]
    code = _int(first.get("code"))
    details = str((first.get("error_data") or {}).get("details") or "")
    normalized = whatsapp.classify(code, None, details)[0]
    text = first.get("message") or first.get("title")
    return normalized, str(code) if code is not None else None, str(text) if text else None


def whatsapp_events(payload: Mapping[str, Any], provider: str = "whatsapp") -> list[DeliveryEvent]:
    events = []
    for status in _whatsapp_statuses(payload):
        wamid, raw = str(status.get("id", "")), str(status.get("status", ""))
        error, code, text = _whatsapp_error(status)
        events.append(
            DeliveryEvent(
                provider=provider,
                event_id=f"{wamid}:{raw}",
                raw_status=raw,
                status=WHATSAPP_STATUS.get(raw),
                provider_message_id=wamid or None,
                outbound_id=_int(status.get("biz_opaque_callback_data")),
                occurred_at=_epoch(status.get("timestamp")),
                error_code=error,
                provider_code=code,
                error_message=text,
            )
        )
    return events
