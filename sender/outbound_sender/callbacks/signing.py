"""Callback signatures: HMAC-SHA256 over "<timestamp>.<body>" (docs/callbacks.md).

Header: `Outbound-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`. One v1 per active secret: two
while a rotation's grace period runs, so a receiver holding either secret accepts the request.
`verify` is the receiver's side, written out in the docs as the recipe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

SIGNATURE_HEADER = "Outbound-Signature"
EVENT_ID_HEADER = "Outbound-Event-Id"
EVENT_HEADER = "Outbound-Event"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """256 random bits; the whole string (prefix included) is the HMAC key, as UTF-8."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(active: Sequence[str], timestamp: int, body: bytes) -> str:
    if not active:
        raise ValueError("no secret to sign with")
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in active)])


def verify(header: str, body: bytes, secret: str, now: float, tolerance: float = 300.0) -> bool:
    """True when `header` carries a v1 signature of `body` by `secret`, made within `tolerance`
    seconds of `now` (an old request replayed later is refused)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)
