"""The generic sandbox provider: a real HTTP server on loopback, and the client that calls it.

Wire format (ours, deliberately simple; the Twilio/SendGrid/WhatsApp sandboxes speak the real ones):
    POST /v1/messages  {"channel", "to", "body"?, "subject"?, "template"?, "reference"}
      201 {"id": "sbx_…", "status": "accepted"}
      4xx/5xx {"error": {"code": <normalized code>, "message": …}}; 429 carries Retry-After.
    GET/PUT /_sandbox/config   latency and failure rules, changeable at run time (tests, demos).
    GET /_sandbox/stats        how many requests were accepted / failed, by recipient.

Failure rules match the recipient with a regular expression and answer with an action:
`permanent:<CODE>`, `temporary`, `ratelimit:<seconds>`, `timeout` (never answers in time),
`http500`. `failure_rate` fails that share of other requests with a temporary error.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, Field

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import (
    AmbiguousSendError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TemporaryError,
)
from outbound_sender.providers.base import SendResult


class FailureRule(BaseModel):
    pattern: str = Field(description="Regular expression searched in the recipient.")
    action: str = Field(description="permanent:<CODE> | temporary | ratelimit:<s> | timeout | http500")


# +1555000000N (not a real number: rows inserted directly) or +1415555000N (valid: what the API and
# `outbound enqueue` accept) fail on purpose.
DEFAULT_RULES = [
    FailureRule(pattern=r"^\+1(?:5550000|4155550)001$", action="permanent:INVALID_PHONE_NUMBER"),
    FailureRule(pattern=r"^\+1(?:5550000|4155550)002$", action="temporary"),
    FailureRule(pattern=r"^\+1(?:5550000|4155550)003$", action="ratelimit:2"),
    FailureRule(pattern=r"^\+1(?:5550000|4155550)004$", action="timeout"),
    FailureRule(pattern=r"^bounce@", action="permanent:INVALID_EMAIL"),
]


class SandboxConfig(BaseModel):
    latency_ms: float = Field(20.0, ge=0, le=600_000)
    failure_rate: float = Field(0.0, ge=0, le=1)
    timeout_hold_seconds: float = Field(60.0, ge=0, description="How long a 'timeout' rule holds the call.")
    rules: list[FailureRule] = Field(default_factory=lambda: list(DEFAULT_RULES))


@dataclass
class SandboxState:
    config: SandboxConfig = field(default_factory=SandboxConfig)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    accepted: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)


Response = tuple[int, dict[str, Any], dict[str, str]]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return status, {"error": {"code": code, "message": message}}, headers or {}


def _rule_action(config: SandboxConfig, recipient: str) -> str | None:
    for rule in config.rules:
        if re.search(rule.pattern, recipient):
            return rule.action
    if config.failure_rate and random.random() < config.failure_rate:
        return "temporary"
    return None


async def _apply_action(state: SandboxState, action: str) -> Response:
    kind, _, arg = action.partition(":")
    if kind == "permanent":
        return _error(400, arg or "PERMANENT_ERROR", "rejected by sandbox rule")
    if kind == "ratelimit":
        return _error(429, "RATE_LIMIT_EXCEEDED", "too many requests", {"Retry-After": arg or "1"})
    if kind == "timeout":
        await asyncio.sleep(state.config.timeout_hold_seconds)
        return _error(504, "TEMPORARY_ERROR", "held past the client's timeout")
    if kind == "http500":
        return _error(500, "TEMPORARY_ERROR", "internal error")
    return _error(503, "TEMPORARY_ERROR", "temporarily unavailable")


async def handle_send(state: SandboxState, payload: dict[str, Any]) -> Response:
    recipient = payload.get("to")
    if not isinstance(recipient, str) or not recipient:
        return _error(400, "PERMANENT_ERROR", "'to' is required")
    if payload.get("channel") not in {c.value for c in Channel}:
        return _error(400, "PERMANENT_ERROR", "'channel' must be SMS, EMAIL or WHATSAPP")
    await asyncio.sleep(state.config.latency_ms / 1000)
    action = _rule_action(state.config, recipient)
    if action is not None:
        state.failed[recipient] += 1
        return await _apply_action(state, action)
    state.accepted[recipient] += 1
    return 201, {"id": f"sbx_{next(state.ids):012d}", "status": "accepted"}, {}


class SandboxApp:
    """A bare ASGI app (no framework): the sandbox must not be the bottleneck of a benchmark."""

    def __init__(self, state: SandboxState | None = None) -> None:
        self.state = state or SandboxState()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = await _read_body(receive)
        status, payload, headers = await self._route(scope["method"], scope["path"], body)
        raw = json.dumps(payload).encode()
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        head += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": raw})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, method: str, path: str, body: bytes) -> Response:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return _error(400, "PERMANENT_ERROR", "body is not JSON")
        if (method, path) == ("POST", "/v1/messages") and isinstance(payload, dict):
            return await handle_send(self.state, payload)
        if path == "/_sandbox/config":
            return self._config(method, payload)
        if (method, path) == ("GET", "/_sandbox/stats"):
            stats = {"accepted": dict(self.state.accepted), "failed": dict(self.state.failed)}
            return 200, stats, {}
        return _error(404, "NOT_FOUND", f"no route {method} {path}")

    def _config(self, method: str, payload: Any) -> Response:
        if method == "PUT":
            try:
                self.state.config = SandboxConfig.model_validate(payload)
            except ValueError as error:
                return _error(422, "INVALID_CONFIG", str(error))
        return 200, self.state.config.model_dump(), {}


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _error_from_response(response: httpx.Response) -> ProviderError:
    try:
        error = response.json()["error"]
        code, text = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, text = "", response.text[:200]
    status = response.status_code
    if status == 429:
        retry_after = float(response.headers.get("Retry-After", "1"))
        return RateLimitedError(
            ErrorCode.RATE_LIMIT_EXCEEDED, text, provider_code=code, retry_after=retry_after, http_status=429
        )
    if status >= 500:
        return TemporaryError(ErrorCode.TEMPORARY_ERROR, text, provider_code=code, http_status=status)
    normalized = ErrorCode(code) if code in ErrorCode.__members__ else ErrorCode.PERMANENT_ERROR
    return PermanentError(normalized, text, provider_code=code, http_status=status)


class SandboxProvider:
    """Client of the generic sandbox server."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, name: str = "sandbox") -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/v1/messages"
        self.name = name
        self.channels = frozenset(Channel)

    async def send(self, message: OutboundMessage) -> SendResult:
        payload = {
            "channel": message.channel.value,
            "to": message.to_recipient,
            "body": message.body,
            "subject": message.subject,
            "template": message.template_code,
            "reference": str(message.id),
        }
        headers = {"X-Correlation-ID": message.correlation_id or ""}
        try:
            response = await self._client.post(self._url, json=payload, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise TemporaryError(ErrorCode.TEMPORARY_ERROR, f"connect failed: {error!r}") from error
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError) as error:
            raise AmbiguousSendError(ErrorCode.TEMPORARY_ERROR, f"no answer after sending: {error!r}") from error
        if response.status_code in (200, 201):
            return SendResult(str(response.json()["id"]), response.status_code, "accepted")
        raise _error_from_response(response)

    async def aclose(self) -> None:
        await self._client.aclose()
