"""Vonage sandbox: the SMS API and the account balance, validated as Vonage's API description says.

    POST /sms/json                form-encoded (a JSON object is read too), api_key + api_secret or sig
    GET  /account/get-balance     api_key + api_secret (or sig) in the query

Every answer to a send is HTTP 200 with `message-count` and one entry per part, its `status` "0"
or an error code with `error-text`. Checks, in order: api_key, from and to present (2), the
credentials (4; a bad `sig` 14, `sig` with `api_secret` 32), the fields' lengths, pattern and
enumerations (3), the callback URL (23), text present for a text message (2). A long text is split
into parts (153 GSM characters, or 67 for unicode, when more than one), each with its own
message-id. Delivery receipts go to the message's `callback`, else to the account's receipt URL
(`send_webhooks_to`), one per part: `accepted`, then `delivered` (or `failed` with the
err-code of an async:<err-code> rule), signed with the signature secret when one is set, sent as
the account's webhook method says (POST form, or POST JSON; the GET method is not sent).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
import uuid
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import orjson

from outbound_sender.providers.vonage import SignatureMethod, VonageSettings, signature
from outbound_sender.sandboxes.base import Reply, Request, Rule, SandboxApp, SandboxConfig, WebhookSandboxConfig

# The sandbox account: public test values in the real formats, valid only against this sandbox.
API_KEY = "5a5a5a5a"
API_SECRET = "sandbox-secret-5a5a"
SIGNATURE_SECRET = "sandbox-signature-secret-5a5a5a5a5a5a5a5a"
FROM_NUMBER = "15005550006"

TO = re.compile(r"\d{7,15}")  # the description's pattern: searched, as JSON Schema does
TYPES = frozenset({"text", "binary", "wappush", "unicode", "vcal", "vcard"})
MAX_SKEW = 300

# name -> error-text, answered with status = name.
ERRORS: dict[str, str] = {
    "1": "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
    "2": "Missing {field} param",
    "3": "Invalid {field} param",
    "4": "Bad Credentials",
    "5": "Internal Error",
    "6": "Invalid Message",
    "7": "Number barred",
    "8": "Partner account barred",
    "9": "Partner quota exceeded",
    "11": "Account not enabled for HTTP",
    "12": "Message too long",
    "14": "Invalid Signature",
    "15": "Illegal Sender Address - rejected",
    "29": "Non White-listed Destination - rejected",
    "32": "Signature and API secret disallowed",
    "33": "Number de-activated",
}


def default_rules() -> list[Rule]:
    # The Twilio sandbox's test numbers (+1555000000N or +1415555000N), matched in E.164 form.
    return [
        Rule(pattern=r"^\+1(?:5550000|4155550)001$", action="error:6"),
        Rule(pattern=r"^\+1(?:5550000|4155550)002$", action="http:503"),
        Rule(pattern=r"^\+1(?:5550000|4155550)003$", action="error:1"),
        Rule(pattern=r"^\+1(?:5550000|4155550)004$", action="timeout"),
        Rule(pattern=r"^\+1(?:5550000|4155550)005$", action="async:2"),
        Rule(pattern=r"^\+1(?:5550000|4155550)006$", action="error:7"),
        Rule(pattern=r"^\+1(?:5550000|4155550)007$", action="error:8"),
    ]


class VonageConfig(WebhookSandboxConfig):
    api_key: str = API_KEY
    api_secret: str = API_SECRET
    signature_secret: str = SIGNATURE_SECRET
    signature_method: SignatureMethod = "md5hash"
    signed_webhooks: bool = True
    webhook_method: Literal["POST", "POST-JSON"] = "POST-JSON"
    receipt_url: str | None = None  # the account's delivery receipt URL (dashboard)
    balance: float = 10.0


def answer(parts: list[dict[str, str]]) -> Reply:
    return Reply(200, {"message-count": str(len(parts)), "messages": parts})


def refused(status: str, **values: str) -> Reply:
    text = ERRORS[status].format(**values) if values else ERRORS[status]
    return answer([{"status": status, "error-text": text}])


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= 1024


def invalid(fields: dict[str, str]) -> Reply | None:
    """The first invalid field (status 3), after the lengths, pattern and enumerations of the
    description; the callback URL (23); text present for a text message (2)."""
    to = fields["to"]
    if not (7 <= len(to) <= 15 and TO.search(to)):
        return refused("3", field="to")
    if fields.get("type", "text") not in TYPES:
        return refused("3", field="type")
    if "message-class" in fields and fields["message-class"] not in ("0", "1", "2", "3"):
        return refused("3", field="message-class")
    ttl = fields.get("ttl")
    if ttl is not None and not (ttl.isdigit() and 20000 <= int(ttl) <= 604800000):
        return refused("3", field="ttl")
    if "status-report-req" in fields and fields["status-report-req"] not in ("true", "false", "1", "0"):
        return refused("3", field="status-report-req")
    if len(fields.get("client-ref", "")) > 40:
        return refused("3", field="client-ref")
    if fields.get("callback") and not _valid_url(fields["callback"]):
        return answer([{"status": "23", "error-text": "Invalid callback url"}])
    if fields.get("type", "text") in ("text", "unicode") and not fields.get("text"):
        return refused("2", field="text")
    return None


def split(text: str, unicode: bool) -> list[str]:
    single, part = (70, 67) if unicode else (160, 153)
    if len(text) <= single:
        return [text]
    return [text[i : i + part] for i in range(0, len(text), part)]


class VonageSandbox(SandboxApp):
    config_model = VonageConfig
    name = "vonage"
    config: VonageConfig

    def default_config(self) -> SandboxConfig:
        return VonageConfig(rules=default_rules())

    def send_webhooks_to(self, url: str | None) -> None:
        self.config.receipt_url = url

    async def handle(self, request: Request) -> Reply:
        if request.path == "/sms/json" and request.method == "POST":
            return await self.send_sms(request)
        if request.path == "/account/get-balance" and request.method == "GET":
            if self.authenticate(request.query_params()) is not None:
                return Reply(401, {"error-code": "401", "error-code-label": "authentication failed"})
            return Reply(200, {"value": self.config.balance, "autoReload": False})
        return Reply(404, {"error": f"no route {request.method} {request.path}"})

    def authenticate(self, fields: dict[str, str]) -> Reply | None:
        """None when the credentials are good, else the refusal (4, 14 or 32)."""
        config = self.config
        if fields.get("sig") and fields.get("api_secret"):
            return refused("32")
        if fields.get("api_key") != config.api_key:
            return refused("4")
        if "sig" in fields:
            stamp = fields.get("timestamp", "")
            expected = signature(config.signature_secret, fields, config.signature_method)
            recent = stamp.isdigit() and abs(time.time() - int(stamp)) <= MAX_SKEW
            # The description caps sig at 60 characters: too short for SHA-256 and SHA-512 HMACs
            # (64 and 128 hex digits), which Vonage takes. Only its minimum applies here.
            good = len(fields["sig"]) >= 16 and fields["sig"].lower() == expected
            return None if config.signature_secret and recent and good else refused("14")
        return None if fields.get("api_secret") == config.api_secret else refused("4")

    async def send_sms(self, request: Request) -> Reply:
        fields = dict(request.form())
        if not fields and isinstance(body := request.json(), dict):
            fields = {str(k): str(v) for k, v in body.items()}
        for name in ("api_key", "from", "to"):
            if not fields.get(name):
                self.stats["invalid"] += 1
                return refused("2", field=name)
        denied = self.authenticate(fields)
        if denied is not None:
            self.stats["auth_failed"] += 1
            return denied
        bad = invalid(fields)
        if bad is not None:
            self.stats["invalid"] += 1
            return bad
        if self.rate_limited():
            self.stats["rate_limited"] += 1
            return refused("1")
        if self.config.balance <= 0:
            return refused("9")
        await self.delay()
        return await self._outcome(fields)

    async def _outcome(self, fields: dict[str, str]) -> Reply:
        to = f"+{fields['to']}"  # rules and counts see E.164, as in the other sandboxes
        action = self.config.action_for(to) or ""
        kind, _, arg = action.partition(":")
        if kind == "error" and arg in ERRORS:
            self.record(f"error:{arg}", to)
            return refused(arg, field="to")
        if kind == "http":
            self.record(f"http:{arg}", to)
            return Reply(int(arg or 500), b"Service unavailable", {"content-type": "text/plain"})
        if kind == "timeout":
            self.record("timeout", to)
            await self.hold()
            return Reply(503, b"Service unavailable", {"content-type": "text/plain"})
        self.record("accepted", to)
        parts = [self.part(fields) for _ in split(fields.get("text", ""), fields.get("type") == "unicode")]
        self._receipts(fields, parts, arg if kind == "async" else None)
        if kind == "slow":  # accepted, but the answer comes too late: an ambiguous send
            await self.hold()
        return answer(parts)

    def part(self, fields: dict[str, str]) -> dict[str, str]:
        self.config.balance = round(self.config.balance - 0.0333, 8)
        part = {
            "to": fields["to"],
            "message-id": secrets.token_hex(8).upper(),
            "status": "0",
            "remaining-balance": f"{self.config.balance:.8f}",
            "message-price": "0.03330000",
            "network": "310260",
        }
        if "client-ref" in fields:
            part["client-ref"] = fields["client-ref"]
        return part

    def _receipts(self, fields: dict[str, str], parts: list[dict[str, str]], failure: str | None) -> None:
        url = fields.get("callback") or self.config.receipt_url
        if not url or not self.config.webhooks or fields.get("status-report-req") in ("false", "0"):
            return
        statuses: list[tuple[str, str]] = [("accepted", "0")]
        if failure:
            statuses.append(("failed", failure))
        elif self.config.delivered:
            statuses.append(("delivered", "0"))
        posts = [self._receipt(url, fields, part, s, c) for part in parts for s, c in statuses]
        self.webhooks.schedule(self.config.webhook_delay_ms / 1000, posts)

    def _receipt(
        self, url: str, fields: dict[str, str], part: dict[str, str], status: str, code: str
    ) -> tuple[str, bytes, dict[str, str]]:
        now = dt.datetime.now(dt.UTC)
        receipt: dict[str, Any] = {
            "msisdn": fields["to"],
            "to": fields["from"],
            "network-code": part["network"],
            "messageId": part["message-id"],
            "price": part["message-price"],
            "status": status,
            "scts": now.strftime("%y%m%d%H%M"),
            "err-code": code,
            "api-key": self.config.api_key,
            "message-timestamp": now.strftime("%Y-%m-%d %H:%M:%S"),
        }
        if "client-ref" in fields:
            receipt["client-ref"] = fields["client-ref"]
        config = self.config
        if config.signed_webhooks and config.signature_secret:
            receipt["timestamp"] = str(int(now.timestamp()))
            receipt["nonce"] = str(uuid.uuid4())
            receipt["sig"] = signature(config.signature_secret, receipt, config.signature_method)
        if config.webhook_method == "POST-JSON":
            return url, orjson.dumps(receipt), {"content-type": "application/json"}
        return url, urlencode(receipt).encode(), {"content-type": "application/x-www-form-urlencoded"}


def account(base_url: str, **overrides: object) -> VonageSettings:
    """The settings of the sandbox account, its API at `base_url`."""
    values: dict[str, object] = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "signature_secret": SIGNATURE_SECRET,
        "from_number": FROM_NUMBER,
        "base_url": base_url,
    }
    return VonageSettings.model_validate({**values, **overrides})
