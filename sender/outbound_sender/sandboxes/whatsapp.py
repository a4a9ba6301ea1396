"""WhatsApp Cloud API sandbox: send messages and fetch the phone number, as the Graph API does.

    POST /{Version}/{Phone-Number-ID}/messages    JSON, Bearer token -> 200 {"messages":[{"id":"wamid…"}]}
    GET  /{Version}/{Phone-Number-ID}             phone number (the runbook's health check)

Errors are Graph errors `{"error": {"message": "(#code) …", "type", "code", "error_data":
{"messaging_product", "details"}, "fbtrace_id"}}`, HTTP 400 for most codes as Meta's table says.
Validation: token (401/190), phone number id (400/100 subcode 33), messaging_product, to, type,
text.body (≤4096), template name / language.code, recipient_type and language.policy values,
biz_opaque_callback_data (≤512). Templates must exist and be APPROVED (132001, 132015, 132016) and
get the right number of body parameters (132000). Throughput beyond rate_per_second answers
130429; `pair_interval_seconds` > 0 enforces the per-recipient pair limit (131056). Status webhooks
(sent, delivered, read — or failed with errors[] for async:<code>) are signed X-Hub-Signature-256.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from typing import Any

import orjson
from pydantic import BaseModel

from outbound_sender.providers.whatsapp import WhatsAppSettings
from outbound_sender.sandboxes.base import Reply, Request, Rule, SandboxApp, SandboxConfig, WebhookSandboxConfig
from outbound_sender.webhooks.whatsapp import sign

# The sandbox account: public test values in the real formats, valid only against this sandbox.
ACCESS_TOKEN = "EAAsandbox0000000000000000000000000000000000"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
APP_SECRET = "sandbox-app-secret-0000000000000000"
VERIFY_TOKEN = "sandbox-verify-token"

PATH = re.compile(r"^/(?P<version>[^/]+)/(?P<phone>[^/]+)(?P<messages>/messages)?$")
VERSION = re.compile(r"^v\d+\.\d+$")
PHONE = re.compile(r"^\+?[1-9]\d{6,14}$")
PLACEHOLDER = re.compile(r"\{\{\s*[\w]+\s*\}\}")
# code -> (HTTP status, title, details)
ERRORS: dict[int, tuple[int, str, str]] = {
    1: (500, "An unknown error has occurred.", "An unknown error has occurred."),
    2: (503, "Service temporarily unavailable", "Service temporarily unavailable"),
    4: (400, "Application request limit reached", "Too many calls from this app."),
    80007: (400, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    100: (400, "Invalid parameter", "Invalid parameter"),
    131000: (500, "Something went wrong", "Message failed to send due to an unknown error."),
    131008: (400, "Required parameter is missing", "A required parameter is missing."),
    131009: (400, "Parameter value is not valid", "Invalid 'to' parameter: not a valid phone number."),
    131016: (503, "Service unavailable", "A service is temporarily unavailable."),
    131026: (400, "Message undeliverable", "Message undeliverable."),
    131031: (400, "Account has been locked", "Business account has been locked."),
    131042: (400, "Business eligibility payment issue", "Payment method issue."),
    131047: (
        400,
        "Re-engagement message",
        "More than 24 hours have passed since the recipient last replied.",
    ),
    131048: (
        400,
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many "
        "messages can be sent from this phone number.",
    ),
    131049: (
        400,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "Meta chose not to deliver this message.",
    ),
    131050: (400, "User has stopped marketing messages", "The user has stopped marketing messages."),
    131056: (
        400,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from this phone number to the same phone number in a short period.",
    ),
    130429: (400, "Rate limit hit", "Cloud API message throughput has been reached."),
    132000: (
        400,
        "Number of parameters does not match the expected number of params",
        "body: number of localizable_params ({got}) does not match the expected number of params ({want})",
    ),
    132001: (
        404,
        "Template name does not exist in the translation",
        "template name ({name}) does not exist in {language}",
    ),
    132015: (400, "Template is Paused", "Template is paused due to low quality."),
    132016: (400, "Template is Disabled", "Template has been disabled."),
    190: (401, "Invalid OAuth access token - Cannot parse access token", ""),
    368: (403, "Temporarily blocked for policies violations", "The account is restricted."),
}


class Template(BaseModel):
    name: str
    languages: list[str] = ["en_US"]
    body_params: int = 0
    status: str = "APPROVED"


def default_templates() -> list[Template]:
    return [
        Template(name="hello_world"),
        Template(name="appointment_reminder", body_params=2),
        Template(name="urgent_alert", body_params=1),
        Template(name="paused_template", status="PAUSED"),
    ]


def default_rules() -> list[Rule]:
    # +1555000000N (not a real number: rows inserted directly) or +1415555000N (valid: what the API
    # and `outbound enqueue` accept) fail on purpose.
    return [
        Rule(pattern=r"^\+?1(?:5550000|4155550)001$", action="error:131026"),
        Rule(pattern=r"^\+?1(?:5550000|4155550)002$", action="http:503"),
        Rule(pattern=r"^\+?1(?:5550000|4155550)003$", action="error:130429"),
        Rule(pattern=r"^\+?1(?:5550000|4155550)004$", action="timeout"),
        Rule(pattern=r"^\+?1(?:5550000|4155550)005$", action="async:131026"),
        Rule(pattern=r"^\+?1(?:5550000|4155550)006$", action="error:131050"),
        Rule(pattern=r"^\+?1(?:5550000|4155550)007$", action="error:368"),
    ]


class WhatsAppConfig(WebhookSandboxConfig):
    access_token: str = ACCESS_TOKEN
    phone_number_id: str = PHONE_NUMBER_ID
    app_secret: str = APP_SECRET
    webhook_url: str | None = None
    pair_interval_seconds: float = 0.0  # Meta: ~6 s between messages to one recipient; 0 = off
    templates: list[Template] = []
    read: bool = True  # follow delivered with read


def graph_error(code: int, *, message: str | None = None, details: str | None = None, **values: Any) -> Reply:
    status, title, detail = ERRORS.get(code, (400, "Invalid parameter", "Invalid parameter"))
    body: dict[str, Any] = {
        "message": f"(#{code}) {message or title}",
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": _fill(details or detail, values)},
        "fbtrace_id": base64.urlsafe_b64encode(secrets.token_bytes(9)).decode(),
    }
    if code in (130429, 131056, 4, 80007, 1, 2, 131000, 131016):
        body["is_transient"] = True
    if code == 190:
        body = {"message": title, "type": "OAuthException", "code": 190, "fbtrace_id": body["fbtrace_id"]}
    return Reply(status, {"error": body})


def _fill(text: str, values: dict[str, Any]) -> str:
    return text.format(**values) if values else text


def param_error(text: str) -> Reply:
    return graph_error(100, message=text, details=text)


def _template_error(template: Any) -> Reply | None:
    if not isinstance(template, dict) or not template.get("name"):
        return param_error("The parameter template['name'] is required.")
    language = template.get("language")
    if not isinstance(language, dict) or not language.get("code"):
        return param_error("The parameter template['language']['code'] is required.")
    if language.get("policy", "deterministic") != "deterministic":
        return param_error("Param template['language']['policy'] must be one of {deterministic}.")
    return None


def validate(body: Any) -> Reply | None:
    if not isinstance(body, dict):
        return param_error("Invalid JSON body.")
    if body.get("messaging_product") != "whatsapp":
        return param_error("The parameter messaging_product is required.")
    if body.get("recipient_type", "individual") not in ("individual", "group"):
        return param_error("Param recipient_type must be one of {individual, group}.")
    to = body.get("to")
    if not isinstance(to, str) or not to:
        return param_error("The parameter to is required.")
    if not PHONE.match(to):
        return graph_error(131009)
    opaque = body.get("biz_opaque_callback_data")
    if opaque is not None and (not isinstance(opaque, str) or len(opaque) > 512):
        return param_error("Param biz_opaque_callback_data must be at most 512 characters long.")
    kind = body.get("type", "text")
    if kind == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"]:
            return param_error("The parameter text['body'] is required.")
        if len(text["body"]) > 4096:
            return param_error("Param text['body'] must be at most 4096 characters long.")
        return None
    if kind == "template":
        return _template_error(body.get("template"))
    return param_error(f"Param type must be one of {{text, template}}, got {kind}.")


def _body_param_count(template: dict[str, Any]) -> int:
    return sum(
        len(part.get("parameters") or [])
        for part in template.get("components") or []
        if isinstance(part, dict) and part.get("type") == "body"
    )


class WhatsAppSandbox(SandboxApp):
    config_model = WhatsAppConfig
    name = "whatsapp"
    config: WhatsAppConfig

    def send_webhooks_to(self, url: str | None) -> None:
        self.config.webhook_url = url

    def __init__(self, config: SandboxConfig | None = None) -> None:
        super().__init__(config)
        self._last_sent: dict[str, float] = {}

    def default_config(self) -> SandboxConfig:
        return WhatsAppConfig(rules=default_rules(), templates=default_templates())

    async def handle(self, request: Request) -> Reply:
        match = PATH.match(request.path)
        if match is None or not VERSION.match(match["version"]):
            return graph_error(100, message=f"Unknown path components: {request.path}")
        if request.headers.get("authorization") != f"Bearer {self.config.access_token}":
            self.stats["auth_failed"] += 1
            return graph_error(190)
        if match["phone"] != self.config.phone_number_id:
            text = (
                f"Unsupported post request. Object with ID '{match['phone']}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation."
            )
            return graph_error(100, message=text, details=text)
        if match["messages"] and request.method == "POST":
            return await self.send_message(request)
        if not match["messages"] and request.method == "GET":
            return Reply(200, self.phone_number())
        return param_error(f"Unsupported {request.method} request.")

    def phone_number(self) -> dict[str, Any]:
        return {
            "verified_name": "Sandbox Business",
            "display_phone_number": DISPLAY_NUMBER,
            "id": self.config.phone_number_id,
            "quality_rating": "GREEN",
            "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
        }

    async def send_message(self, request: Request) -> Reply:
        body = request.json()
        invalid = validate(body) or self._template_check(body)
        if invalid is not None:
            self.stats["invalid"] += 1
            return invalid
        if self.rate_limited():
            self.stats["rate_limited"] += 1
            return graph_error(130429)
        if self._pair_limited(body["to"]):
            self.stats["pair_limited"] += 1
            return graph_error(131056)
        await self.delay()
        return await self._outcome(body)

    def _template_check(self, body: dict[str, Any]) -> Reply | None:
        if body.get("type") != "template":
            return None
        template = body["template"]
        name, language = template["name"], template["language"]["code"]
        known = next((t for t in self.config.templates if t.name == name and language in t.languages), None)
        if known is None or known.status not in ("APPROVED", "PAUSED", "DISABLED"):
            return graph_error(132001, name=name, language=language)
        if known.status == "PAUSED":
            return graph_error(132015)
        if known.status == "DISABLED":
            return graph_error(132016)
        got = _body_param_count(template)
        return None if got == known.body_params else graph_error(132000, got=got, want=known.body_params)

    def _pair_limited(self, to: str) -> bool:
        interval = self.config.pair_interval_seconds
        if interval <= 0:
            return False
        now = time.monotonic()
        digits = to.lstrip("+")
        if now - self._last_sent.get(digits, -interval) < interval:
            return True
        self._last_sent[digits] = now
        return False

    async def _outcome(self, body: dict[str, Any]) -> Reply:
        kind, _, arg = (self.config.action_for(body["to"]) or "").partition(":")
        if kind == "error" and arg.isdigit():
            self.record(f"error:{arg}", body["to"])
            return graph_error(int(arg), name="", language="", got=0, want=0)
        if kind == "http":
            self.record(f"http:{arg}", body["to"])
            return graph_error(2 if arg == "503" else 1)
        if kind == "timeout":
            self.record("timeout", body["to"])
            await self.hold()
            return graph_error(2)
        self.record("accepted", body["to"])
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()
        self._statuses(body, wamid, int(arg) if kind == "async" and arg.isdigit() else None)
        if kind == "slow":  # accepted, but the answer comes too late: an ambiguous send
            await self.hold()
        wa_id = body["to"].lstrip("+")
        return Reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": wa_id}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            },
        )

    def _statuses(self, body: dict[str, Any], wamid: str, failure: int | None) -> None:
        url = self.config.webhook_url
        if not url or not self.config.webhooks:
            return
        names = ["sent", "failed"] if failure else ["sent"]
        if not failure and self.config.delivered:
            names += ["delivered", "read"] if self.config.read else ["delivered"]
        posts = [self._post(url, self.status(body, wamid, name, failure)) for name in names]
        self.webhooks.schedule(self.config.webhook_delay_ms / 1000, posts)

    def status(self, body: dict[str, Any], wamid: str, name: str, failure: int | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": wamid,
            "status": name,
            "timestamp": str(int(time.time())),
            "recipient_id": body["to"].lstrip("+"),
        }
        if body.get("biz_opaque_callback_data"):
            item["biz_opaque_callback_data"] = body["biz_opaque_callback_data"]
        if name == "failed" and failure is not None:
            _status, title, details = ERRORS.get(failure, (400, "Message failed", "Message failed"))
            item["errors"] = [{"code": failure, "title": title, "message": title, "error_data": {"details": details}}]
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": DISPLAY_NUMBER,
                "phone_number_id": self.config.phone_number_id,
            },
            "statuses": [item],
        }
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
        }

    def _post(self, url: str, payload: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        raw = orjson.dumps(payload)
        headers = {
            "content-type": "application/json",
            "x-hub-signature-256": sign(self.config.app_secret, raw),
            "user-agent": "facebookexternalua",
        }
        return url, raw, headers


def account(base_url: str, **overrides: object) -> WhatsAppSettings:
    """The settings of the sandbox account, its API at `base_url`."""
    values: dict[str, object] = {
        "access_token": ACCESS_TOKEN,
        "phone_number_id": PHONE_NUMBER_ID,
        "base_url": base_url,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
    }
    return WhatsAppSettings.model_validate({**values, **overrides})
