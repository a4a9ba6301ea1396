"""Vonage delivery receipts: the handler the registry mounts at providers/vonage.py's DLR_PATH,
the check of their signature and their reading into DeliveryEvents.

A receipt is signed by a field of its own, `sig` (next to `timestamp` and `nonce`): the account's
signature method over every other field (providers/vonage.py, `signature`), hex in either case, and
a `timestamp` within MAX_SKEW seconds of now, so a captured receipt cannot be replayed later.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from outbound_sender.domain import Channel, DeliveryStatus
from outbound_sender.providers.settings import secret
from outbound_sender.providers.vonage import SignatureMethod, VonageSettings, dlr_error, signature
from outbound_sender.webhooks.endpoints import MAX_FORM_FIELDS, Endpoints, forbidden, form_pairs, json_body
from outbound_sender.webhooks.events import (
    MAX_CODE,
    DeliveryEvent,
    Parsed,
    epoch,
    free_text,
    identifier,
    integer,
    our_id,
    status_name,
)
from outbound_sender.webhooks.signatures import same

NAME = "vonage"
MAX_SKEW = 300.0
STATUS = {
    "accepted": DeliveryStatus.SENT,
    "buffered": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "expired": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.UNDELIVERED,
    "rejected": DeliveryStatus.UNDELIVERED,
}


def verify(secret_value: str, params: Mapping[str, str], method: SignatureMethod, now: float | None = None) -> bool:
    """Check a signed receipt: its `sig` over the other fields, its `timestamp` recent."""
    given = params.get("sig", "")
    stamp = params.get("timestamp", "")
    if not secret_value or not given or not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > MAX_SKEW:
        return False
    return same(signature(secret_value, params, method), given.lower())


def event(params: Mapping[str, object], provider: str = NAME) -> DeliveryEvent:
    """One delivery receipt (each part of a long message has its own); MalformedEvent when it
    cannot be read. Our id is its `client-ref`; `unknown` and other statuses are recorded only."""
    message_id = identifier(params.get("messageId"), "messageId", required=True)
    raw = status_name(params.get("status"))
    code = integer(params.get("err-code"))
    failed = STATUS.get(raw) is DeliveryStatus.UNDELIVERED
    return DeliveryEvent(
        provider=provider,
        channel=Channel.SMS,
        event_id=f"{message_id}:{raw}",
        raw_status=raw,
        status=STATUS.get(raw),
        provider_message_id=message_id,
        outbound_id=our_id(params.get("client-ref")),
        occurred_at=epoch(params.get("timestamp")),
        error_code=dlr_error(code or 0) if failed else None,
        provider_code=free_text(code, MAX_CODE) if code else None,
        account=identifier(params.get("api-key"), "api-key"),
    )


async def receipt(endpoints: Endpoints, request: Request) -> Response:
    """A delivery receipt, as the account's webhook method sends it: GET with the fields in the
    query, POST as a form, or POST as a JSON object. The signature is one of the fields."""
    raw = await endpoints.body(request)
    if isinstance(raw, Response):
        return raw
    if request.method == "GET":
        pairs = form_pairs(request.url.query.encode())
    elif request.headers.get("content-type", "").startswith("application/json"):
        fields = json_body(raw)
        if not isinstance(fields, dict):
            return Response(status_code=400, content="expected a JSON object")
        pairs = [(str(k), str(v)) for k, v in fields.items() if isinstance(v, str | int | float)]
    else:
        pairs = form_pairs(raw)
    if pairs is None:
        return Response(status_code=400, content=f"more than {MAX_FORM_FIELDS} fields")
    params = dict(pairs)
    account = endpoints.account(NAME, VonageSettings)
    method = account.signature_method if account else "md5hash"
    if not verify(secret(account.signature_secret) if account else "", params, method):
        return forbidden(NAME, "sig", endpoints.metrics)
    parsed = Parsed()
    parsed.add(event, params)
    return await endpoints.record(NAME, parsed, (account.api_key or "") if account else "")
