"""Provider delivery webhooks -> DeliveryEvent: pure parsing, one function per provider.

Each event carries a de-duplication key unique per provider (`event_id`), the normalized delivery
status (None: recorded but does not move the message, e.g. an unsubscribe after delivery), both
ways to find the message (our id carried in the send, and the provider's message id), and, for
failures, the normalized error code from the same tables the clients use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from outbound_sender.domain import Channel, DeliveryStatus, ErrorCode
from outbound_sender.providers import twilio, whatsapp
from outbound_sender.providers.sendgrid import OUR_ID


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    provider: str
    channel: Channel  # the channel the provider's endpoint serves: only its messages can match
    event_id: str
    raw_status: str
    status: DeliveryStatus | None
    provider_message_id: str | None
    outbound_id: int | None
    occurred_at: dt.datetime
    error_code: ErrorCode | None = None
    provider_code: str | None = None
    error_message: str | None = None
    account: str | None = None  # Twilio AccountSid, WhatsApp phone_number_id (None: not said)


class MalformedEvent(ValueError):
    """One event that cannot be read. The text names the field, never its value (no recipient or
    provider text reaches a log line through it)."""


@dataclass
class Parsed:
    """What a webhook body held: the events that could be read, and why each other one could not."""

    events: list[DeliveryEvent] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)

    def add(self, build: Callable[..., DeliveryEvent], *args: Any) -> None:
        """build(*args) as one more event, or one more malformed one."""
        try:
            self.events.append(build(*args))
        except MalformedEvent as error:
            self.malformed.append(str(error))


MAX_ID = 255  # ids and statuses are indexed or compared: real ones are far shorter
MAX_CODE = 64
MAX_TEXT = 2000
BIGINT_MAX = 2**63 - 1
LATEST_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds


def integer(value: object) -> int | None:
    """A lenient integer (error codes): None when it is not one."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def identifier(value: object, name: str, *, required: bool = False) -> str | None:
    """An identifier or status: a printable string (or integer) of at most MAX_ID characters."""
    if value is None or value == "":
        if required:
            raise MalformedEvent(f"{name} missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedEvent(f"{name} is not a string")
    text = str(value)
    if len(text) > MAX_ID or not text.isprintable():
        raise MalformedEvent(f"{name} is not an identifier")
    return text


def our_id(value: object) -> int | None:
    """Our message id as carried in the send: absent, or a positive bigint."""
    text = identifier(value, "outbound_id")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= BIGINT_MAX:
        raise MalformedEvent("outbound_id is not a message id")
    return int(text)


def free_text(value: object, limit: int = MAX_TEXT) -> str | None:
    """Free text from the provider, made storable: no NUL, no lone surrogate, at most `limit`."""
    if value is None or value == "":
        return None
    text = str(value).encode("utf-8", "replace").decode().replace("\x00", "\ufffd")
    return text[:limit]


def epoch(value: object) -> dt.datetime:
    """Seconds since the epoch (a whole number, as a string, an integer or a float); absent: now."""
    if value is None or value == "":
        return dt.datetime.now(dt.UTC)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedEvent("timestamp is not whole seconds")
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) > LATEST_EPOCH:
        raise MalformedEvent("timestamp out of range")
    return dt.datetime.fromtimestamp(int(text), dt.UTC)


def iso_time(value: object) -> dt.datetime:
    """An ISO 8601 instant with its offset (2026-11-29T12:00:00.123Z); absent: now."""
    if value is None or value == "":
        return dt.datetime.now(dt.UTC)
    if not isinstance(value, str) or len(value) > 40:
        raise MalformedEvent("timestamp is not an ISO 8601 string")
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedEvent("timestamp is not ISO 8601") from None
    if moment.tzinfo is None:
        raise MalformedEvent("timestamp has no offset")
    return moment


def status_name(value: object) -> str:
    return identifier(value, "status") or ""


# ---- Twilio ----------------------------------------------------------------------------------
TWILIO_STATUS = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.UNDELIVERED,
    "read": DeliveryStatus.READ,
}


def twilio_event(params: Mapping[str, str], outbound_id: str | None, provider: str = "twilio") -> DeliveryEvent:
    """One status callback; MalformedEvent when it cannot be read."""
    sid = identifier(params.get("MessageSid") or params.get("SmsSid"), "MessageSid", required=True)
    raw = status_name(params.get("MessageStatus") or params.get("SmsStatus"))
    code = integer(params.get("ErrorCode"))
    error = twilio.classify(code, None)[0] if code else None
    return DeliveryEvent(
        provider=provider,
        channel=Channel.SMS,
        event_id=f"{sid}:{raw}",
        raw_status=raw,
        status=TWILIO_STATUS.get(raw),
        provider_message_id=sid,
        outbound_id=our_id(outbound_id),
        occurred_at=dt.datetime.now(dt.UTC),
        error_code=error,
        provider_code=free_text(code, MAX_CODE) if code else None,
        account=identifier(params.get("AccountSid"), "AccountSid"),
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


def _sendgrid_event(item: object, provider: str) -> DeliveryEvent:
    if not isinstance(item, Mapping):
        raise MalformedEvent("event is not an object")
    status, error = _sendgrid_status(item)
    sg_message_id = identifier(item.get("sg_message_id"), "sg_message_id") or ""
    raw = status_name(item.get("event"))
    event_id = identifier(item.get("sg_event_id"), "sg_event_id") or (
        f"{sg_message_id}:{raw}" if sg_message_id else None
    )
    if event_id is None:
        raise MalformedEvent("sg_event_id missing")
    return DeliveryEvent(
        provider=provider,
        channel=Channel.EMAIL,
        event_id=event_id[:MAX_ID],
        raw_status=raw,
        status=status,
        provider_message_id=sg_message_id.split(".", 1)[0] or None,
        outbound_id=our_id(_sendgrid_custom_arg(item)),
        occurred_at=epoch(item.get("timestamp")),
        error_code=error,
        provider_code=free_text(item.get("status"), MAX_CODE),
        error_message=free_text(item.get("reason") or item.get("response")),
    )


def sendgrid_events(batch: Iterable[object], provider: str = "sendgrid") -> Parsed:
    """The events of one Event Webhook POST (a JSON array), each read on its own."""
    parsed = Parsed()
    for item in batch:
        parsed.add(_sendgrid_event, item, provider)
    return parsed


# ---- WhatsApp --------------------------------------------------------------------------------
WHATSAPP_STATUS = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.UNDELIVERED,
}


def _objects(container: Mapping[str, Any], key: str, parsed: Parsed) -> Iterator[Mapping[str, Any]]:
    """The objects in container[key] (absent: none); anything else there is counted as malformed."""
    items = container.get(key)
    if items is None:
        return
    if not isinstance(items, list):
        parsed.malformed.append(f"{key} is not a list")
        return
    for item in items:
        if isinstance(item, Mapping):
            yield item
        else:
            parsed.malformed.append(f"{key} item is not an object")


def _whatsapp_error(status: Mapping[str, Any]) -> tuple[ErrorCode | None, str | None, str | None]:
    errors = status.get("errors")
    if not errors:
        return None, None, None
    first = errors[0] if isinstance(errors, list) else None
    if not isinstance(first, Mapping):
        raise MalformedEvent("errors is not a list of objects")
    code = integer(first.get("code"))
    data = first.get("error_data")
    details = str(data.get("details") or "") if isinstance(data, Mapping) else ""
    normalized = whatsapp.classify(code, None, details)[0]
    text = free_text(first.get("message") or first.get("title"))
    return normalized, free_text(code, MAX_CODE) if code is not None else None, text


def _whatsapp_event(status: Mapping[str, Any], account: str | None, provider: str) -> DeliveryEvent:
    wamid = identifier(status.get("id"), "id", required=True)
    raw = status_name(status.get("status"))
    error, code, text = _whatsapp_error(status)
    return DeliveryEvent(
        provider=provider,
        channel=Channel.WHATSAPP,
        event_id=f"{wamid}:{raw}",
        raw_status=raw,
        status=WHATSAPP_STATUS.get(raw),
        provider_message_id=wamid,
        outbound_id=our_id(status.get("biz_opaque_callback_data")),
        occurred_at=epoch(status.get("timestamp")),
        error_code=error,
        provider_code=code,
        error_message=text,
        account=account,
    )


def whatsapp_events(payload: Mapping[str, Any], provider: str = "whatsapp") -> Parsed:
    """The statuses of one webhook POST (entry[].changes[].value.statuses[]), each read on its own.
    The account is the value's metadata.phone_number_id."""
    parsed = Parsed()
    for entry in _objects(payload, "entry", parsed):
        for change in _objects(entry, "changes", parsed):
            value = change.get("value")
            if change.get("field", "messages") != "messages" or value is None:
                continue
            if not isinstance(value, Mapping):
                parsed.malformed.append("value is not an object")
                continue
            metadata = value.get("metadata")
            try:
                number = metadata.get("phone_number_id") if isinstance(metadata, Mapping) else None
                account = identifier(number, "phone_number_id")
            except MalformedEvent as error:
                parsed.malformed.append(str(error))
                continue
            for status in _objects(value, "statuses", parsed):
                parsed.add(_whatsapp_event, status, account, provider)
    return parsed
