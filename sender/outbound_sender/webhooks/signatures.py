"""Webhook signature schemes as pure functions: sign (sandboxes, tests) and verify (endpoints).
A provider whose scheme is its own keeps it in its webhooks/<provider>.py.

* Twilio `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + Σ sorted(name + value))) over the
  form parameters; a JSON body is covered by `bodySHA256=<hex sha256>` in the URL instead. Twilio
  may sign the URL with or without the default port, so both forms are tried (as its SDK does).
  With `X-Twilio-Webhooks-Signature-Settings: …algorithm=HMAC_SHA256` the HMAC is SHA-256.
* SendGrid `X-Twilio-Email-Event-Webhook-Signature`: base64 DER ECDSA P-256/SHA-256 over
  timestamp + raw body, verified with the account's verification key (base64 DER SPKI).
* Meta `X-Hub-Signature-256`: "sha256=" + hex HMAC-SHA256(app secret, raw body).

Every verify function returns False, never raises, on malformed input: callers fail closed. A
signature is ASCII by construction (base64 or hex); headers reach us as latin-1 text, so anything
else is refused before hmac.compare_digest, which raises TypeError on non-ASCII text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

Params = Iterable[tuple[str, str]]
DEFAULT_PORTS = {"https": 443, "http": 80}


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of two signatures; False (not TypeError) when `given` is not ASCII."""
    return given.isascii() and hmac.compare_digest(expected.encode(), given.encode())


# ---- Twilio ----------------------------------------------------------------------------------
def twilio_signature(token: str, url: str, params: Params = (), algorithm: str = "sha1") -> str:
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


def twilio_algorithm(settings_header: str | None) -> str:
    """Hash of X-Twilio-Webhooks-Signature-Settings (`key=…,algorithm=HMAC_SHA256`), else SHA-1."""
    if settings_header and "algorithm=hmac_sha256" in settings_header.replace(" ", "").lower():
        return "sha256"
    return "sha1"


def twilio_body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def verify_twilio(
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
        if not same(twilio_body_hash(json_body), query.get("bodySHA256", "")):
            return False
        pairs = []
    for candidate in {url, _with_port(url), _without_port(url)}:
        expected = twilio_signature(token, candidate, pairs, algorithm)
        if same(expected, signature):
            return True
    return False


# ---- SendGrid --------------------------------------------------------------------------------
def load_sendgrid_key(public_key: str) -> ec.EllipticCurvePublicKey | None:
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


def sendgrid_signature(private_key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    der = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


def sendgrid_public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def verify_sendgrid(public_key: str, body: bytes, signature: str | None, timestamp: str | None) -> bool:
    if not public_key or not signature or not timestamp or not (signature + timestamp).isascii():
        return False
    key = load_sendgrid_key(public_key)
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


# ---- Meta (WhatsApp) -------------------------------------------------------------------------
def meta_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_meta(app_secret: str, body: bytes, header: str | None) -> bool:
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    return same(meta_signature(app_secret, body), header)
