"""Twilio sandbox: the 2010-04-01 Messages API and account fetch, validated as Twilio does.

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   form-encoded, HTTP Basic
    GET  /2010-04-01/Accounts/{AccountSid}.json            account (the runbook's health check)

Validation order follows the real API: credentials (401/20003), To (21604), From or
MessagingServiceSid (21603), Body/MediaUrl/ContentSid (21602), To format (21211), Body length
(21617), StatusCallback URL (21609). A JSON body is not read (Twilio only parses form fields), so
it fails as a missing To. Accepted messages answer 201 with the Message resource; when a
StatusCallback was given, `sent` then `delivered` (or `undelivered` + ErrorCode for async:<code>
rules) are POSTed to it, signed with X-Twilio-Signature.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

from outbound_sender.providers.twilio import TwilioSettings
from outbound_sender.sandboxes.base import (
    Redelivery,
    Reply,
    Request,
    Rule,
    SandboxApp,
    SandboxConfig,
    WebhookSandboxConfig,
)
from outbound_sender.webhooks.twilio import sign

# The sandbox account: public test values in the real formats, valid only against this sandbox.
ACCOUNT_SID = "AC" + "5a" * 16
AUTH_TOKEN = "5a" * 16
MESSAGING_SERVICE_SID = "MG" + "5a" * 16
FROM_NUMBER = "+15005550006"

MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
ACCOUNT = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)\.json$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MG_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")

# name -> (HTTP status, message). Bodies are {"code", "message", "more_info", "status"}.
ERRORS: dict[str, tuple[int, str]] = {
    "20003": (401, "Authenticate"),
    "20005": (401, "Account is not active"),
    "10001": (400, "Account is not active"),
    "20429": (429, "Too Many Requests"),
    "21211": (400, "The 'To' number {to} is not a valid phone number."),
    "21408": (
        400,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
    ),
    "21602": (400, "Message body is required."),
    "21603": (400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."),
    "21604": (400, "A 'To' phone number is required."),
    "21608": (
        400,
        "The number {to} is unverified. Trial accounts cannot send messages to unverified numbers.",
    ),
    "21609": (400, "Invalid StatusCallback url"),
    "21610": (400, "Attempt to send to unsubscribed recipient"),
    "21611": (400, "This 'From' number has exceeded the maximum number of queued messages"),
    "21614": (400, "'To' number is not a valid mobile number"),
    "21617": (400, "The concatenated message body exceeds the 1600 character limit."),
    "21701": (400, "The Messaging Service Sid {service} is invalid."),
}
SERVER_ERRORS = {500: (20500, "An internal server error has occurred"), 503: (20503, "Service Unavailable")}


def default_rules() -> list[Rule]:
    # +1555000000N (not a real number: rows inserted directly) or +1415555000N (valid: what the API
    # and `outbound enqueue` accept) fail on purpose.
    return [
        Rule(pattern=r"^\+1(?:5550000|4155550)001$", action="error:21211"),
        Rule(pattern=r"^\+1(?:5550000|4155550)002$", action="http:503"),
        Rule(pattern=r"^\+1(?:5550000|4155550)003$", action="error:20429"),
        Rule(pattern=r"^\+1(?:5550000|4155550)004$", action="timeout"),
        Rule(pattern=r"^\+1(?:5550000|4155550)005$", action="async:30003"),
        Rule(pattern=r"^\+1(?:5550000|4155550)006$", action="error:21610"),
        Rule(pattern=r"^\+1(?:5550000|4155550)007$", action="error:20005"),
    ]


class TwilioConfig(WebhookSandboxConfig):
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    account_status: str = "active"


def error_reply(code: str, **values: str) -> Reply:
    status, template = ERRORS[code]
    body = {
        "code": int(code),
        "message": template.format(**values) if values else template,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, body)


def server_error(status: int) -> Reply:
    code, text = SERVER_ERRORS.get(status, (20500, "An internal server error has occurred"))
    return Reply(status, {"code": code, "message": text, "more_info": "", "status": status})


def _basic(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "_" not in (parts.hostname or "")


def validate(fields: dict[str, str]) -> Reply | None:
    """The first validation error of a Messages POST, in Twilio's order."""
    to = fields.get("To", "")
    if not to:
        return error_reply("21604")
    if not (fields.get("From") or fields.get("MessagingServiceSid")):
        return error_reply("21603")
    if not (fields.get("Body") or fields.get("MediaUrl") or fields.get("ContentSid")):
        return error_reply("21602")
    if not E164.match(to.removeprefix("whatsapp:")):
        return error_reply("21211", to=to)
    service = fields.get("MessagingServiceSid")
    if service and not MG_SID.match(service):
        return error_reply("21701", service=service)
    sender = fields.get("From")
    if sender and not (E164.match(sender.removeprefix("whatsapp:")) or ALPHA_SENDER.match(sender)):
        return error_reply("21211", to=sender)
    if len(fields.get("Body", "")) > 1600:
        return error_reply("21617")
    if fields.get("StatusCallback") and not _valid_url(fields["StatusCallback"]):
        return error_reply("21609")
    return None


class TwilioSandbox(SandboxApp):
    config_model = TwilioConfig
    name = "twilio"
    config: TwilioConfig
    # Twilio's webhook defaults: one retry when the connection fails, 5 s to connect, 15 s in all;
    # an answer, even a 5xx, is final.
    redelivery = Redelivery(attempts=2, on_status=False, connect_timeout=5.0, read_timeout=15.0)

    def default_config(self) -> SandboxConfig:
        return TwilioConfig(rules=default_rules())

    def _authorized(self, request: Request, sid: str) -> bool:
        pair = _basic(request.headers.get("authorization", ""))
        return pair == (self.config.account_sid, self.config.auth_token) and sid == self.config.account_sid

    async def handle(self, request: Request) -> Reply:
        messages = MESSAGES.match(request.path)
        if messages and request.method == "POST":
            return await self.create_message(request, messages["sid"])
        account = ACCOUNT.match(request.path)
        if account and request.method == "GET":
            if not self._authorized(request, account["sid"]):
                return error_reply("20003")
            return Reply(200, self.account_resource())
        return Reply(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})

    def account_resource(self) -> dict[str, Any]:
        sid = self.config.account_sid
        return {
            "sid": sid,
            "friendly_name": "Sandbox account",
            "status": self.config.account_status,
            "type": "Full",
            "uri": f"/2010-04-01/Accounts/{sid}.json",
        }

    async def create_message(self, request: Request, sid: str) -> Reply:
        if not self._authorized(request, sid):
            self.stats["auth_failed"] += 1
            return error_reply("20003")
        if self.config.account_status != "active":
            return error_reply("20005")
        fields = dict(request.form())
        invalid = validate(fields)
        if invalid is not None:
            self.stats["invalid"] += 1
            return invalid
        if self.rate_limited():
            self.stats["rate_limited"] += 1
            return error_reply("20429")
        await self.delay()
        return await self._outcome(fields)

    async def _outcome(self, fields: dict[str, str]) -> Reply:
        action = self.config.action_for(fields["To"]) or ""
        kind, _, arg = action.partition(":")
        if kind == "error" and arg in ERRORS:
            self.record(f"error:{arg}", fields["To"])
            return error_reply(arg, to=fields["To"], service=fields.get("MessagingServiceSid", ""))
        if kind == "http":
            self.record(f"http:{arg}", fields["To"])
            return server_error(int(arg or 500))
        if kind == "timeout":
            self.record("timeout", fields["To"])
            await self.hold()
            return server_error(503)
        self.record("accepted", fields["To"])
        message = self.message_resource(fields)
        self._callbacks(fields, message, arg if kind == "async" else None)
        if kind == "slow":  # accepted, but the answer comes too late: an ambiguous send
            await self.hold()
        return Reply(201, message)

    def message_resource(self, fields: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = email.utils.formatdate(usegmt=True)
        account = self.config.account_sid
        return {
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": fields.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": fields.get("From"),
            "messaging_service_sid": fields.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(max(1, -(-len(fields.get("Body", "")) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if fields.get("MessagingServiceSid") else "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"},
            "to": fields["To"],
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }

    def _callbacks(self, fields: dict[str, str], message: dict[str, Any], failure: str | None) -> None:
        url = fields.get("StatusCallback")
        if not url or not self.config.webhooks:
            return
        statuses: list[tuple[str, str | None]] = [("sent", None)]
        if failure:
            statuses.append(("failed" if failure == "30002" else "undelivered", failure))
        elif self.config.delivered:
            statuses.append(("delivered", None))
        posts = [self._callback(url, message, status, code) for status, code in statuses]
        self.webhooks.schedule(self.config.webhook_delay_ms / 1000, posts)

    def _callback(
        self, url: str, message: dict[str, Any], status: str, code: str | None
    ) -> tuple[str, bytes, dict[str, str]]:
        params = {
            "AccountSid": message["account_sid"],
            "ApiVersion": "2010-04-01",
            "MessageSid": message["sid"],
            "SmsSid": message["sid"],
            "MessageStatus": status,
            "SmsStatus": status,
            "To": message["to"],
        }
        for key, value in (
            ("From", message["from"]),
            ("MessagingServiceSid", message["messaging_service_sid"]),
            ("ErrorCode", code),
        ):
            if value:
                params[key] = value
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": sign(self.config.auth_token, url, params.items()),
            "i-twilio-idempotency-token": str(uuid.uuid4()),
            "user-agent": "TwilioProxy/1.1",
        }
        return url, urlencode(params).encode(), headers


def account(base_url: str, **overrides: object) -> TwilioSettings:
    """The settings of the sandbox account, its API at `base_url`."""
    values: dict[str, object] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "messaging_service_sid": MESSAGING_SERVICE_SID,
        "base_url": base_url,
    }
    return TwilioSettings.model_validate({**values, **overrides})
