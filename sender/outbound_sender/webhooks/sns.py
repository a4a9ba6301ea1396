"""Amazon SNS HTTP(S) deliveries: the signature of each message, and where its certificate may come from.

SNS signs every message it POSTs (Notification, SubscriptionConfirmation, UnsubscribeConfirmation):
`Signature` is base64 RSA over a canonical string of the message's own fields, each as `name\\n
value\\n`, in this order, skipping those the type does not have:

    Notification                              Message, MessageId, Subject (when present), Timestamp,
                                              TopicArn, Type
    SubscriptionConfirmation / Unsubscribe…   Message, MessageId, SubscribeURL, Timestamp, Token,
                                              TopicArn, Type

SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA. The key is the X.509 certificate at
`SigningCertURL`, which is accepted only from https://sns.<region of the topic>.amazonaws.com/ (or
.amazonaws.com.cn) unless configuration trusts another prefix (the sandbox's own server in tests);
the same rule guards the SubscribeURL we GET to confirm a subscription. A message older than
MAX_AGE_SECONDS is refused as a replay: SNS gives up retrying well before that.

Every verify function returns False, never raises, on malformed input: callers fail closed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger("webhooks")
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
TOPIC = re.compile(r"^arn:aws[a-z-]*:sns:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2}):\d{12}:[\w-]{1,256}$")
CERTIFICATE_PATH = re.compile(r"^/SimpleNotificationService-[0-9a-f]{16,64}\.pem$")
SUBSCRIBE_PATH = re.compile(r"^/?$")
MAX_AGE_SECONDS = 3900.0  # SNS's longest delivery retry policy (an hour), and clock skew
MAX_CERTIFICATE_BYTES = 16_384


def canonical(message: Mapping[str, object]) -> bytes:
    """The string SNS signs for this message's Type (KeyError when a field it needs is missing)."""
    kind = message["Type"]
    fields = NOTIFICATION_FIELDS if kind == "Notification" else SUBSCRIPTION_FIELDS
    parts = []
    for name in fields:
        if name == "Subject" and message.get("Subject") is None:
            continue
        value = message[name]
        if not isinstance(value, str):
            raise KeyError(name)
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode()


def sign(message: Mapping[str, object], key: rsa.RSAPrivateKey, version: str = "1") -> str:
    """The Signature of `message` (the sandbox signs as SNS does)."""
    return base64.b64encode(key.sign(canonical(message), padding.PKCS1v15(), HASHES[version]())).decode()


def topic_region(topic_arn: object) -> str | None:
    match = TOPIC.match(topic_arn) if isinstance(topic_arn, str) else None
    return match["region"] if match else None


def trusted_url(
    url: object, topic_arn: object, prefixes: Sequence[str], path: re.Pattern[str] = CERTIFICATE_PATH
) -> bool:
    """An SNS URL we may fetch: https on the topic's regional SNS host with the path SNS uses for it
    (a certificate's `/SimpleNotificationService-<hex>.pem`, a SubscribeURL's `/?Action=…`), or
    anything under a prefix the configuration trusts."""
    if not isinstance(url, str) or not url.isascii() or any(c in url for c in "\r\n\\@"):
        return False
    if any(prefix and url.startswith(prefix) for prefix in prefixes):
        return True
    region = topic_region(topic_arn)
    parts = urlsplit(url)
    hosts = {f"sns.{region}.amazonaws.com", f"sns.{region}.amazonaws.com.cn"}
    on_sns = region is not None and parts.scheme == "https" and parts.port is None and parts.hostname in hosts
    return on_sns and path.match(parts.path) is not None


def verify(message: Mapping[str, object], certificate: x509.Certificate) -> bool:
    """The message's Signature over its canonical string, with the certificate's RSA key."""
    version = message.get("SignatureVersion")
    signature = message.get("Signature")
    key = certificate.public_key()
    if version not in HASHES or not isinstance(signature, str) or not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(
            base64.b64decode(signature, validate=True), canonical(message), padding.PKCS1v15(), HASHES[version]()
        )
    except (InvalidSignature, KeyError, ValueError, binascii.Error):
        return False
    return True


def recent(message: Mapping[str, object], now: float | None = None) -> bool:
    """Timestamp (ISO 8601, UTC) within MAX_AGE_SECONDS of now, either way: not a replay."""
    stamp = message.get("Timestamp")
    if not isinstance(stamp, str) or len(stamp) > 40:
        return False
    try:
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        return False
    return abs((time.time() if now is None else now) - moment.timestamp()) <= MAX_AGE_SECONDS


class Certificates:
    """SNS signing certificates by URL, fetched once each (a few per region, rotated rarely)."""

    def __init__(self, limit: int = 32, timeout: float = 5.0) -> None:
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._limit = limit
        self._timeout = timeout

    async def get(self, url: str) -> x509.Certificate | None:
        """The certificate at `url` (already checked by trusted_url), or None when it cannot be had."""
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                response = await client.get(url)
        except httpx.HTTPError as error:
            log.warning("SNS certificate not fetched", extra={"fields": {"url": url, "error": type(error).__name__}})
            return None
        if response.status_code != 200 or len(response.content) > MAX_CERTIFICATE_BYTES:
            log.warning("SNS certificate not fetched", extra={"fields": {"url": url, "status": response.status_code}})
            return None
        try:
            certificate = x509.load_pem_x509_certificate(response.content)
        except ValueError:
            return None
        self._cache[url] = certificate
        while len(self._cache) > self._limit:
            self._cache.popitem(last=False)
        return certificate
