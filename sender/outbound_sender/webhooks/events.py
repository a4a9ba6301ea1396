"""The DeliveryEvent every provider's webhook module (webhooks/<provider>.py) reads its receipts
into, and the helpers that read a provider's values safely (identifiers, our id, times, free text).

Each event carries a de-duplication key unique per provider (`event_id`), the normalized delivery
status (None: recorded but does not move the message, e.g. an unsubscribe after delivery), both
ways to find the message (our id carried in the send, and the provider's message id), and, for
failures, the normalized error code from the same tables the clients use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from outbound_sender.domain import Channel, DeliveryStatus, ErrorCode


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
    account: str | None = None  # the account the receipt names: an account SID, a number id (None: not said)


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
