"""WhatsApp Cloud API status webhooks: the handlers the registry mounts at WEBHOOK_PATH (Meta's
verification handshake on GET, the statuses on POST), the check of `X-Hub-Signature-256` and the
reading of each status into a DeliveryEvent.

The signature is "sha256=" + hex HMAC-SHA256(app secret, raw body); the handshake echoes
hub.challenge when hub.verify_token is ours. The account is each value's
metadata.phone_number_id, which must be ours when WHATSAPP_PHONE_NUMBER_ID is set.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outbound_sender.domain import Channel, DeliveryStatus, ErrorCode
from outbound_sender.providers.settings import secret
from outbound_sender.providers.whatsapp import WhatsAppSettings, classify
from outbound_sender.webhooks.endpoints import Endpoints, forbidden, json_body
from outbound_sender.webhooks.events import (
    MAX_CODE,
    DeliveryEvent,
    MalformedEvent,
    Parsed,
    epoch,
    free_text,
    identifier,
    integer,
    our_id,
    status_name,
)
from outbound_sender.webhooks.signatures import same

NAME = "whatsapp"
WEBHOOK_PATH = "/whatsapp"
CHALLENGE = re.compile(r"[0-9]{1,64}")


def sign(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify(app_secret: str, body: bytes, header: str | None) -> bool:
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    return same(sign(app_secret, body), header)


STATUS = {
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


def _error(status: Mapping[str, Any]) -> tuple[ErrorCode | None, str | None, str | None]:
    errors = status.get("errors")
    if not errors:
        return None, None, None
    first = errors[0] if isinstance(errors, list) else None
    if not isinstance(first, Mapping):
        raise MalformedEvent("errors is not a list of objects")
    code = integer(first.get("code"))
    data = first.get("error_data")
    details = str(data.get("details") or "") if isinstance(data, Mapping) else ""
    normalized = classify(code, None, details)[0]
    text = free_text(first.get("message") or first.get("title"))
    return normalized, free_text(code, MAX_CODE) if code is not None else None, text


def _event(status: Mapping[str, Any], account: str | None, provider: str) -> DeliveryEvent:
    wamid = identifier(status.get("id"), "id", required=True)
    raw = status_name(status.get("status"))
    error, code, text = _error(status)
    return DeliveryEvent(
        provider=provider,
        channel=Channel.WHATSAPP,
        event_id=f"{wamid}:{raw}",
        raw_status=raw,
        status=STATUS.get(raw),
        provider_message_id=wamid,
        outbound_id=our_id(status.get("biz_opaque_callback_data")),
        occurred_at=epoch(status.get("timestamp")),
        error_code=error,
        provider_code=code,
        error_message=text,
        account=account,
    )


def events(payload: Mapping[str, Any], provider: str = NAME) -> Parsed:
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
                parsed.add(_event, status, account, provider)
    return parsed


async def verification(endpoints: Endpoints, request: Request) -> Response:
    q = request.query_params
    account = endpoints.account(NAME, WhatsAppSettings)
    token = secret(account.verify_token) if account else ""
    if q.get("hub.mode") != "subscribe" or not token or not same(token, q.get("hub.verify_token", "")):
        return forbidden(NAME, "hub.verify_token", endpoints.metrics)
    challenge = q.get("hub.challenge", "")
    if not CHALLENGE.fullmatch(challenge):  # Meta sends a number: echo nothing else back
        return Response(status_code=400, content="hub.challenge must be a number")
    return Response(content=challenge, media_type="text/plain")


async def statuses(endpoints: Endpoints, request: Request) -> Response:
    raw = await endpoints.body(request)
    if isinstance(raw, Response):
        return raw
    account = endpoints.account(NAME, WhatsAppSettings)
    if not verify(secret(account.app_secret) if account else "", raw, request.headers.get("x-hub-signature-256")):
        return forbidden(NAME, "X-Hub-Signature-256", endpoints.metrics)
    payload = json_body(raw)
    if not isinstance(payload, dict):
        return Response(status_code=400, content="expected a JSON object")
    return await endpoints.record(NAME, events(payload), (account.phone_number_id or "") if account else "")
