"""Twilio status callbacks: the handler the registry mounts at providers/twilio.py's
STATUS_CALLBACK_PATH, the check of `X-Twilio-Signature` and the reading of a callback into a
DeliveryEvent.

The signature is base64(HMAC-SHA1(auth token, URL + Σ sorted(name + value))) over the form
parameters; a JSON body is covered by `bodySHA256=<hex sha256>` in the URL instead. Twilio may sign
the URL with or without the default port, so both forms are tried (as its SDK does). With
`X-Twilio-Webhooks-Signature-Settings: …algorithm=HMAC_SHA256` the HMAC is SHA-256. The account
named by `AccountSid` must be ours when TWILIO_ACCOUNT_SID is set.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import Response

from outbound_sender.domain import Channel, DeliveryStatus
from outbound_sender.providers.settings import secret
from outbound_sender.providers.twilio import STATUS_CALLBACK_PATH, TwilioSettings, classify
from outbound_sender.webhooks.endpoints import MAX_FORM_FIELDS, Endpoints, forbidden, form_pairs, json_object
from outbound_sender.webhooks.events import (
    MAX_CODE,
    DeliveryEvent,
    Parsed,
    free_text,
    identifier,
    integer,
    our_id,
    status_name,
)
from outbound_sender.webhooks.signatures import same

NAME = "twilio"
Params = Iterable[tuple[str, str]]
DEFAULT_PORTS = {"https": 443, "http": 80}


def sign(token: str, url: str, params: Params = (), algorithm: str = "sha1") -> str:
    """base64 HMAC of the URL followed by every name+value, sorted by name then value."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), algorithm).digest()
    return base64.b64encode(digest).decode()


def _with_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.port is not None or parts.scheme not in DEFAULT_PORTS:
        return url
    netloc = f"{parts.netloc}:{DEFAULT_PORTS[parts.scheme]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _without_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.port is None:
        return url
    netloc = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def hash_algorithm(settings_header: str | None) -> str:
    """Hash of X-Twilio-Webhooks-Signature-Settings (`key=…,algorithm=HMAC_SHA256`), else SHA-1."""
    if settings_header and "algorithm=hmac_sha256" in settings_header.replace(" ", "").lower():
        return "sha256"
    return "sha1"


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def verify(
    token: str,
    url: str,
    params: Params,
    signature: str | None,
    *,
    algorithm: str = "sha1",
    json_body: bytes | None = None,
) -> bool:
    """Check a status callback. For a JSON body, `params` is ignored and bodySHA256 must match."""
    if not token or not signature:
        return False
    pairs = list(params)
    if json_body is not None:
        query = dict(parse_qsl(urlsplit(url).query))
        if not same(body_hash(json_body), query.get("bodySHA256", "")):
            return False
        pairs = []
    for candidate in {url, _with_port(url), _without_port(url)}:
        expected = sign(token, candidate, pairs, algorithm)
        if same(expected, signature):
            return True
    return False


STATUS = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.UNDELIVERED,
    "read": DeliveryStatus.READ,
}


def event(params: Mapping[str, str], outbound_id: str | None, provider: str = NAME) -> DeliveryEvent:
    """One status callback; MalformedEvent when it cannot be read."""
    sid = identifier(params.get("MessageSid") or params.get("SmsSid"), "MessageSid", required=True)
    raw = status_name(params.get("MessageStatus") or params.get("SmsStatus"))
    code = integer(params.get("ErrorCode"))
    error = classify(code, None)[0] if code else None
    return DeliveryEvent(
        provider=provider,
        channel=Channel.SMS,
        event_id=f"{sid}:{raw}",
        raw_status=raw,
        status=STATUS.get(raw),
        provider_message_id=sid,
        outbound_id=our_id(outbound_id),
        occurred_at=dt.datetime.now(dt.UTC),
        error_code=error,
        provider_code=free_text(code, MAX_CODE) if code else None,
        account=identifier(params.get("AccountSid"), "AccountSid"),
    )


async def status_callback(endpoints: Endpoints, request: Request) -> Response:
    raw = await endpoints.body(request)
    if isinstance(raw, Response):
        return raw
    is_json = request.headers.get("content-type", "").startswith("application/json")
    params = [] if is_json else form_pairs(raw)
    if params is None:
        return Response(status_code=400, content=f"more than {MAX_FORM_FIELDS} form fields")
    url = endpoints.signed_url(request, STATUS_CALLBACK_PATH)
    algorithm = hash_algorithm(request.headers.get("x-twilio-webhooks-signature-settings"))
    account = endpoints.account(NAME, TwilioSettings)
    ok = verify(
        secret(account.auth_token) if account else "",
        url,
        params,
        request.headers.get("x-twilio-signature"),
        algorithm=algorithm,
        json_body=raw if is_json else None,
    )
    if not ok:
        return forbidden(NAME, "X-Twilio-Signature", endpoints.metrics)
    fields = json_object(raw) if is_json else dict(params)
    parsed = Parsed()
    parsed.add(
        event,
        {k: str(v) for k, v in fields.items()},
        request.query_params.get("outbound_id"),
    )
    return await endpoints.record(NAME, parsed, (account.account_sid or "") if account else "")
