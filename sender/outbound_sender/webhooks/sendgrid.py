"""SendGrid Event Webhook: the handler the registry mounts at EVENTS_PATH, the check of its ECDSA
signature and the reading of each event into a DeliveryEvent.

`X-Twilio-Email-Event-Webhook-Signature` is base64 DER ECDSA P-256/SHA-256 over timestamp + raw
body, verified with the account's verification key (base64 DER SPKI, or PEM).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import Response

from outbound_sender.domain import Channel, DeliveryStatus, ErrorCode
from outbound_sender.providers.sendgrid import OUR_ID, SendGridSettings
from outbound_sender.providers.settings import secret
from outbound_sender.webhooks.endpoints import Endpoints, forbidden, json_body
from outbound_sender.webhooks.events import (
    MAX_CODE,
    MAX_ID,
    DeliveryEvent,
    MalformedEvent,
    Parsed,
    epoch,
    free_text,
    identifier,
    our_id,
    status_name,
)

NAME = "sendgrid"
EVENTS_PATH = "/sendgrid/events"


def load_key(public_key: str) -> ec.EllipticCurvePublicKey | None:
    """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo (or PEM)."""
    text = public_key.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text))
    except (ValueError, binascii.Error, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


def sign(private_key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    der = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def verify(public_key: str, body: bytes, signature: str | None, timestamp: str | None) -> bool:
    if not public_key or not signature or not timestamp or not (signature + timestamp).isascii():
        return False
    key = load_key(public_key)
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


OPTED_OUT = ("spamreport", "unsubscribe", "group_unsubscribe")


def _drop(reason: str) -> ErrorCode:
    lowered = reason.lower()
    if "unsubscribe" in lowered or "spam" in lowered:
        return ErrorCode.RECIPIENT_UNSUBSCRIBED
    if "bounce" in lowered or "invalid" in lowered:
        return ErrorCode.INVALID_EMAIL
    return ErrorCode.PERMANENT_ERROR


def _status(event: Mapping[str, Any]) -> tuple[DeliveryStatus | None, ErrorCode | None]:
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
        return DeliveryStatus.BOUNCED, _drop(str(event.get("reason", "")))
    if name in OPTED_OUT:
        return None, ErrorCode.RECIPIENT_UNSUBSCRIBED
    return None, None


def _custom_arg(event: Mapping[str, Any]) -> object:
    """The outbound_id custom argument the send carried, as the event holds it: a top-level key, or
    inside its `unique_args` / `custom_args` object. It finds the message when the 202 had no
    X-Message-Id."""
    for carrier in (event, event.get("unique_args"), event.get("custom_args")):
        if isinstance(carrier, Mapping) and carrier.get(OUR_ID) is not None:
            return carrier.get(OUR_ID)
    return None


def _event(item: object, provider: str) -> DeliveryEvent:
    if not isinstance(item, Mapping):
        raise MalformedEvent("event is not an object")
    status, error = _status(item)
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
        outbound_id=our_id(_custom_arg(item)),
        occurred_at=epoch(item.get("timestamp")),
        error_code=error,
        provider_code=free_text(item.get("status"), MAX_CODE),
        error_message=free_text(item.get("reason") or item.get("response")),
    )


def events(batch: Iterable[object], provider: str = NAME) -> Parsed:
    """The events of one Event Webhook POST (a JSON array), each read on its own."""
    parsed = Parsed()
    for item in batch:
        parsed.add(_event, item, provider)
    return parsed


async def event_webhook(endpoints: Endpoints, request: Request) -> Response:
    raw = await endpoints.body(request)
    if isinstance(raw, Response):
        return raw
    account = endpoints.account(NAME, SendGridSettings)
    ok = verify(
        secret(account.webhook_public_key) if account else "",
        raw,
        request.headers.get("x-twilio-email-event-webhook-signature"),
        request.headers.get("x-twilio-email-event-webhook-timestamp"),
    )
    if not ok:
        return forbidden(NAME, "X-Twilio-Email-Event-Webhook-Signature", endpoints.metrics)
    batch = json_body(raw)
    if not isinstance(batch, list):
        return Response(status_code=400, content="expected a JSON array of events")
    return await endpoints.record(NAME, events(batch))
