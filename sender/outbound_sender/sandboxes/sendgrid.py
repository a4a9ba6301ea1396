"""SendGrid sandbox: v3 Mail Send plus the endpoints a credentials check uses.

    POST /v3/mail/send    JSON, Bearer SG.…  -> 202, empty body, X-Message-Id
    GET  /v3/scopes       the key's scopes (mail.send)
    GET  /v3/stats        needs start_date (YYYY-MM-DD), like the real one

Every answer carries X-RateLimit-Limit / -Remaining / -Reset (Unix seconds of the window's end);
past the limit: 429 `{"errors":[{"field":null,"message":"too many requests"}]}`. Validation follows
the spec (personalizations 1-1000 with to[], from.email, subject unless template, content unless
template_id, template_id d-…, custom_args values strings) with SendGrid's error bodies, and the
from address must be a verified Sender Identity (403). Accepted mail produces Event Webhook events
(processed, delivered — or bounce / dropped / deferred for async:<name> rules), signed with ECDSA.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
import time
from functools import cache
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from outbound_sender.providers.sendgrid import SendGridSettings
from outbound_sender.sandboxes.base import Reply, Request, Rule, SandboxApp, SandboxConfig, WebhookSandboxConfig
from outbound_sender.webhooks.sendgrid import public_key_b64, sign

# The sandbox account: public test values in the real formats, valid only against this sandbox.
API_KEY = "SG.sandbox-key-0000000000.sandbox-secret-00000000000000000000000000000"
FROM_EMAIL = "noreply@sandbox.example.com"
# The Event Webhook signing key derives from a fixed seed, so the sandbox (which signs) and the
# webhook endpoint (which verifies with the public half) agree without sharing a file.
_SEED = b"outbound-messaging sendgrid sandbox event webhook key"

EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
TEMPLATE_ID = re.compile(r"^d-[0-9a-fA-F]{32}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
AUTH_INVALID = "The provided authorization grant is invalid, expired, or revoked"
UNVERIFIED_FROM = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is "
    "resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ to see the "
    "Sender Identity requirements"
)
# Rule names -> (HTTP status, field, message).
ERRORS: dict[str, tuple[int, str | None, str]] = {
    "invalid_email": (400, "personalizations.0.to.0.email", "Does not contain a valid address."),
    "bad_request": (400, None, "Bad Request"),
    "template": (400, "template_id", "The template_id must be a valid GUID, you provided 'd-…'."),
    "auth": (401, None, AUTH_INVALID),
    "credits": (401, None, "Maximum credits exceeded"),
    "forbidden": (403, "from", UNVERIFIED_FROM),
    "suspended": (403, None, "Your account has been disabled. Contact support to re-enable it."),
    "too_large": (413, None, "The JSON payload you have included in your request is too large."),
    "too_many": (429, None, "too many requests"),
}
ASYNC_EVENTS: dict[str, dict[str, str]] = {
    "bounce": {
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
    },
    "blocked": {"event": "bounce", "type": "blocked", "status": "4.0.0", "reason": "421 try again later"},
    "dropped_unsubscribed": {"event": "dropped", "reason": "Unsubscribed Address"},
    "dropped_invalid": {"event": "dropped", "reason": "Bounced Address"},
    "deferred": {"event": "deferred", "response": "400 try again later", "attempt": "1"},
    "spamreport": {"event": "spamreport"},
}


def default_rules() -> list[Rule]:
    return [
        Rule(pattern=r"^bounce@", action="async:bounce"),
        Rule(pattern=r"^unsubscribed@", action="async:dropped_unsubscribed"),
        Rule(pattern=r"^error503@", action="http:503"),
        Rule(pattern=r"^ratelimit@", action="error:too_many"),
        Rule(pattern=r"^timeout@", action="timeout"),
        Rule(pattern=r"^nocredits@", action="error:credits"),
    ]


class SendGridConfig(WebhookSandboxConfig):
    api_key: str = API_KEY
    verified_senders: list[str] = [FROM_EMAIL]
    templates: list[str] = ["d-" + "5a" * 16]
    rate_limit: int = 10_000  # requests per rate_window_seconds, reported in X-RateLimit-* headers
    rate_window_seconds: int = 1
    event_webhook_url: str | None = None


def errors(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"errors": [{"message": message, "field": field, "help": None}]}, headers or {})


class Window:
    """Fixed-window counter behind the X-RateLimit-* headers."""

    def __init__(self) -> None:
        self.start = 0
        self.used = 0

    def take(self, limit: int, seconds: int) -> tuple[bool, dict[str, str]]:
        now = time.time()
        start = int(now // seconds * seconds)
        if start != self.start:
            self.start, self.used = start, 0
        allowed = self.used < limit
        self.used += allowed
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - self.used)),
            "X-RateLimit-Reset": str(start + seconds),
        }
        return allowed, headers


def _personalization_error(index: int, item: Any, has_subject: bool) -> Reply | None:
    prefix = f"personalizations.{index}"
    to = item.get("to") if isinstance(item, dict) else None
    if not isinstance(to, list) or not to:
        return errors(
            400,
            "The to array is required for all personalization objects, and must have at "
            "least one email object with a valid email address.",
            f"{prefix}.to",
        )
    for j, recipient in enumerate(to):
        address = recipient.get("email") if isinstance(recipient, dict) else None
        if not isinstance(address, str) or not EMAIL.match(address):
            return errors(400, "Does not contain a valid address.", f"{prefix}.to.{j}.email")
    args = item.get("custom_args", {})
    if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
        return errors(400, "Custom args must be strings.", f"{prefix}.custom_args")
    if not has_subject and not item.get("subject"):
        return errors(
            400,
            "The subject is required. You can get around this requirement if you use a "
            "template with a subject defined or if every personalization has a subject defined.",
            "subject",
        )
    return None


def _content_error(body: dict[str, Any], templates: list[str]) -> Reply | None:
    template = body.get("template_id")
    if template is not None:
        if not isinstance(template, str) or not TEMPLATE_ID.match(template) or template not in templates:
            return errors(400, f"The template_id must be a valid GUID, you provided '{template}'.", "template_id")
        return None
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return errors(
            400,
            "Unless a valid template_id is provided, the content parameter is required. There "
            "must be at least one defined content block.",
            "content",
        )
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not block.get("type") or not block.get("value"):
            return errors(
                400,
                "The content value must be a string at least one character in length.",
                f"content.{i}.value",
            )
    return None


def validate(body: Any, config: SendGridConfig) -> Reply | None:
    if not isinstance(body, dict):
        return errors(400, "Bad Request")
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not 1 <= len(personalizations) <= 1000:
        return errors(
            400,
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    sender = body.get("from")
    address = sender.get("email") if isinstance(sender, dict) else None
    if not isinstance(address, str) or not EMAIL.match(address):
        return errors(400, "The from email does not contain a valid address.", "from.email")
    has_subject = bool(body.get("subject")) or "template_id" in body
    for i, item in enumerate(personalizations):
        problem = _personalization_error(i, item, has_subject)
        if problem is not None:
            return problem
    return _content_error(body, config.templates) or _verified(address, config)


def _verified(address: str, config: SendGridConfig) -> Reply | None:
    return None if address in config.verified_senders else errors(403, UNVERIFIED_FROM, "from")


class SendGridSandbox(SandboxApp):
    config_model = SendGridConfig
    name = "sendgrid"
    config: SendGridConfig

    def send_webhooks_to(self, url: str | None) -> None:
        self.config.event_webhook_url = url

    def __init__(self, config: SandboxConfig | None = None) -> None:
        super().__init__(config)
        self.window = Window()

    def default_config(self) -> SandboxConfig:
        return SendGridConfig(rules=default_rules())

    async def handle(self, request: Request) -> Reply:
        auth = request.headers.get("authorization", "")
        if not auth:
            return errors(401, "authorization required")
        if auth != f"Bearer {self.config.api_key}":
            self.stats["auth_failed"] += 1
            return errors(401, AUTH_INVALID)
        allowed, headers = self.window.take(self.config.rate_limit, self.config.rate_window_seconds)
        if not allowed or self.rate_limited():
            self.stats["rate_limited"] += 1
            return errors(429, "too many requests", headers=headers)
        reply = await self._endpoint(request)
        reply.headers.update(headers)
        return reply

    async def _endpoint(self, request: Request) -> Reply:
        route = (request.method, request.path)
        if route == ("POST", "/v3/mail/send"):
            return await self.mail_send(request)
        if route == ("GET", "/v3/scopes"):
            return Reply(200, {"scopes": ["mail.send", "stats.read"]})
        if route == ("GET", "/v3/stats"):
            start = request.query_params().get("start_date", "")
            if not DATE.match(start):
                return errors(400, "start_date is required", "start_date")
            return Reply(200, [])
        return errors(404, "resource not found")

    async def mail_send(self, request: Request) -> Reply:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return errors(400, "Content-Type should be application/json.")
        if len(request.body) > 30 * 1024 * 1024:
            return errors(413, ERRORS["too_large"][2])
        body = request.json()
        invalid = validate(body, self.config)
        if invalid is not None:
            self.stats["invalid"] += 1
            return invalid
        await self.delay()
        return await self._outcome(body)

    async def _outcome(self, body: dict[str, Any]) -> Reply:
        recipient = body["personalizations"][0]["to"][0]["email"]
        kind, _, arg = (self.config.action_for(recipient) or "").partition(":")
        if kind == "error" and arg in ERRORS:
            self.record(f"error:{arg}", recipient)
            status, field, message = ERRORS[arg]
            return errors(status, message, field)
        if kind == "http":
            self.record(f"http:{arg}", recipient)
            return errors(int(arg or 500), "Internal Server Error")
        if kind == "timeout":
            self.record("timeout", recipient)
            await self.hold()
            return errors(503, "Service Unavailable")
        self.record("accepted", recipient)
        message_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        self._events(body, message_id, arg if kind == "async" else None)
        if kind == "slow":  # accepted, but the answer comes too late: an ambiguous send
            await self.hold()
        return Reply(202, None, {"X-Message-Id": message_id})

    def _events(self, body: dict[str, Any], message_id: str, failure: str | None) -> None:
        url = self.config.event_webhook_url
        if not url or not self.config.webhooks:
            return
        kinds: list[dict[str, str]] = [{"event": "processed"}]
        if failure in ASYNC_EVENTS:
            kinds.append(ASYNC_EVENTS[failure])
        elif self.config.delivered:
            kinds.append({"event": "delivered", "response": "250 OK"})
        posts = [self._post(url, [event(body, message_id, k)]) for k in kinds]
        self.webhooks.schedule(self.config.webhook_delay_ms / 1000, posts)

    def _post(self, url: str, batch: list[dict[str, Any]]) -> tuple[str, bytes, dict[str, str]]:
        raw = orjson.dumps(batch) + b"\r\n"
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-twilio-email-event-webhook-signature": sign(signing_key(), raw, timestamp),
            "x-twilio-email-event-webhook-timestamp": timestamp,
            "user-agent": "SendGrid Event API",
        }
        return url, raw, headers


def event(body: dict[str, Any], message_id: str, kind: dict[str, str]) -> dict[str, Any]:
    """One Event Webhook event: custom_args become top-level keys, as SendGrid sends them."""
    personalization = body["personalizations"][0]
    item: dict[str, Any] = {
        **dict(body.get("custom_args") or {}),
        **dict(personalization.get("custom_args") or {}),
        "email": personalization["to"][0]["email"],
        "timestamp": int(time.time()),
        "smtp-id": f"<{message_id}@sandbox.sendgrid.net>",
        "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("="),
        "sg_message_id": f"{message_id}.filterdrecv-sandbox-1-{math.floor(time.time()):X}-0",
        **kind,
    }
    return item


@cache
def signing_key() -> ec.EllipticCurvePrivateKey:
    secret = int.from_bytes(hashlib.sha256(_SEED).digest(), "big")
    return ec.derive_private_key(secret, ec.SECP256R1())


def verification_key() -> str:
    """What SendGrid's settings page would show: base64 DER of the public key."""
    return public_key_b64(signing_key())


def account(base_url: str, **overrides: object) -> SendGridSettings:
    """The settings of the sandbox account, its API at `base_url`."""
    values: dict[str, object] = {
        "api_key": API_KEY,
        "from_email": FROM_EMAIL,
        "base_url": base_url,
        "webhook_public_key": verification_key(),
    }
    return SendGridSettings.model_validate({**values, **overrides})
