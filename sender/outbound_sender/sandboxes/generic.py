"""The generic sandbox: every channel, no account, the simple wire format of its client
(providers/sandbox.py; OUTBOUND_PROVIDER_KIND=generic, served by `outbound sandbox`).

Behaviour, counts and reset are base.py's `/_sandbox` routes and rules. Its `error:<name>` names
are the normalized error codes: `error:RATE_LIMIT_EXCEEDED` answers 429 with Retry-After
`retry_after_seconds` (as does the `rate_per_second` limit), `error:TEMPORARY_ERROR` 503, any other
400. `http:<5xx>` answers that status, `timeout` a 504 after the hold. It sends no delivery
webhooks, so it refuses `async:` rules and has no webhook settings.
"""

from __future__ import annotations

import itertools

from pydantic import Field, model_validator

from outbound_sender.domain import Channel, ErrorCode
from outbound_sender.providers.sandbox import MESSAGES_PATH
from outbound_sender.sandboxes.base import Reply, Request, Rule, SandboxApp, SandboxConfig

# Codes a provider answers; LEASE_EXPIRED and NO_PROVIDER are the pipeline's own.
PROVIDER_CODES = frozenset(ErrorCode) - {ErrorCode.LEASE_EXPIRED, ErrorCode.NO_PROVIDER}
STATUS = {ErrorCode.RATE_LIMIT_EXCEEDED: 429, ErrorCode.TEMPORARY_ERROR: 503}


def default_rules() -> list[Rule]:
    # +1555000000N (not a real number: rows inserted directly) or +1415555000N (valid: what the API
    # and `outbound enqueue` accept) fail on purpose, as in the provider sandboxes.
    return [
        Rule(pattern=r"^\+1(?:5550000|4155550)001$", action="error:INVALID_PHONE_NUMBER"),
        Rule(pattern=r"^\+1(?:5550000|4155550)002$", action="http:503"),
        Rule(pattern=r"^\+1(?:5550000|4155550)003$", action="error:RATE_LIMIT_EXCEEDED"),
        Rule(pattern=r"^\+1(?:5550000|4155550)004$", action="timeout"),
        Rule(pattern=r"^bounce@", action="error:INVALID_EMAIL"),
    ]


class GenericConfig(SandboxConfig):
    latency_ms: float = Field(20.0, ge=0, le=600_000)
    rules: list[Rule] = Field(default_factory=default_rules)
    retry_after_seconds: float = Field(2.0, ge=0, le=3600, description="Retry-After of its 429 answers.")

    @model_validator(mode="after")
    def _generic_only(self) -> GenericConfig:
        for rule in self.rules:
            kind, _, arg = rule.action.partition(":")
            if kind == "async":
                raise ValueError(f"action {rule.action!r}: the generic sandbox sends no delivery webhooks")
            if kind == "error" and arg not in PROVIDER_CODES:
                codes = ", ".join(sorted(PROVIDER_CODES))
                raise ValueError(
                    f"action {rule.action!r}: the generic sandbox's errors are the normalized codes: {codes}"
                )
        return self


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}}, headers or {})


class GenericSandbox(SandboxApp):
    config_model = GenericConfig
    config: GenericConfig

    def __init__(self, config: GenericConfig | None = None) -> None:
        super().__init__(config)
        self._ids = itertools.count(1)

    async def handle(self, request: Request) -> Reply:
        if (request.method, request.path) != ("POST", MESSAGES_PATH):
            return error(404, "NOT_FOUND", f"no route {request.method} {request.path}")
        payload = request.json()
        if not isinstance(payload, dict):
            return error(400, "PERMANENT_ERROR", "body is not a JSON object")
        recipient = payload.get("to")
        if not isinstance(recipient, str) or not recipient:
            return error(400, "PERMANENT_ERROR", "'to' is required")
        if payload.get("channel") not in {c.value for c in Channel}:
            return error(400, "PERMANENT_ERROR", "'channel' must be SMS, EMAIL or WHATSAPP")
        if self.rate_limited():
            self.stats["rate_limited"] += 1
            return self._rate_limit()
        await self.delay()
        return await self._outcome(recipient)

    async def _outcome(self, recipient: str) -> Reply:
        kind, _, arg = (self.config.action_for(recipient) or "").partition(":")
        if kind == "error":
            self.record(f"error:{arg}", recipient)
            if arg == ErrorCode.RATE_LIMIT_EXCEEDED:
                return self._rate_limit()
            return error(STATUS.get(ErrorCode(arg), 400), arg, "rejected by sandbox rule")
        if kind == "http":
            self.record(f"http:{arg}", recipient)
            return error(int(arg), "TEMPORARY_ERROR", "server error")
        if kind == "timeout":
            self.record("timeout", recipient)
            await self.hold()
            return error(504, "TEMPORARY_ERROR", "held past the client's timeout")
        self.record("accepted", recipient)
        if kind == "slow":  # accepted, but the answer comes too late: an ambiguous send
            await self.hold()
        return Reply(201, {"id": f"sbx_{next(self._ids):012d}", "status": "accepted"})

    def _rate_limit(self) -> Reply:
        retry_after = {"Retry-After": f"{self.config.retry_after_seconds:g}"}
        return error(429, "RATE_LIMIT_EXCEEDED", "too many requests", retry_after)
