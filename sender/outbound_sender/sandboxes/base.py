"""What every sandbox shares (the provider fakes and the generic sandbox): a bare ASGI server,
behaviour rules, rate limiting, counts, and the background sender of signed delivery webhooks.

Behaviour is set per sandbox through `GET/PUT /_sandbox/config` (or `app.config` in-process):

    latency_ms            added to every API call
    rules                 [{pattern, action}]: the first rule whose regular expression matches the
                          recipient decides. Actions:
                            error:<name>   answer with that error of the sandbox's catalogue (the
                                           real provider's: 21211, 130429, invalid_email, …; the
                                           generic sandbox's: the normalized codes)
                            http:<5xx>     the provider's own server-error body with that status
                            timeout        hold the request for timeout_hold_seconds (client times out)
                            async:<name>   accept, then report a delivery failure by webhook
                            slow           accept (webhooks follow), answer after the hold: the
                                           client times out on a message that was sent
                          A malformed action, or a form of the generic sandbox's old rule syntax
                          (permanent:<CODE>, temporary, ratelimit:<s>, http500), is refused with a
                          422 that names its replacement.
    failure_rate          share of the requests no rule matched that fail as `http:503`
    rate_per_second       throughput limit (token bucket, burst = rate); answered as the real API does
    webhooks              send delivery webhooks (sent, then delivered) after webhook_delay_ms
                          (provider sandboxes only; a setting a sandbox does not have is refused)
    `GET /_sandbox/stats` {"requests": counts per outcome, "webhooks": counts per answer status,
                           "recipients": {"accepted": {to: n}, "failed": {to: n}}} (a recipient
                           accepted twice is a duplicate send); `POST /_sandbox/reset` clears them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

log = logging.getLogger("sandbox")
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# The generic sandbox's rule actions before it joined this framework -> what to write now.
OLD_ACTIONS = {
    "permanent": "error:<CODE> (error:INVALID_EMAIL)",
    "temporary": "http:503",
    "ratelimit": "error:RATE_LIMIT_EXCEEDED (its Retry-After is the config's retry_after_seconds)",
    "http500": "http:500",
}
ACTION_KINDS = ("error", "http", "timeout", "async", "slow")


class Rule(BaseModel):
    pattern: str = Field(description="Regular expression searched in the recipient.")
    action: str = Field(description="error:<name> | http:<5xx> | timeout | async:<name> | slow")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"pattern {pattern!r} is not a regular expression: {error}") from None
        return pattern

    @field_validator("action")
    @classmethod
    def _known(cls, action: str) -> str:
        kind, colon, arg = action.partition(":")
        if kind in OLD_ACTIONS:
            raise ValueError(f"action {action!r} is the generic sandbox's old syntax; write {OLD_ACTIONS[kind]}")
        if kind not in ACTION_KINDS:
            raise ValueError(
                f"unknown action {action!r}; actions: error:<name>, http:<5xx>, timeout, async:<name>, slow"
            )
        if kind in ("error", "async") and not arg:
            raise ValueError(f"action {action!r} needs a name: {kind}:<name>")
        if kind == "http" and not (arg.isdigit() and 500 <= int(arg) <= 599):
            raise ValueError(f"action {action!r} needs a server-error status: http:500 … http:599")
        if kind in ("timeout", "slow") and colon:
            raise ValueError(f"action {action!r} takes no argument: write {kind}")
        return action


class SandboxConfig(BaseModel):
    # A misspelt or foreign setting is refused (422), never silently ignored.
    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(0.0, ge=0, le=600_000)
    timeout_hold_seconds: float = Field(60.0, ge=0, le=3600)
    rules: list[Rule] = Field(default_factory=list)
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of unmatched requests failed as http:503.")
    rate_per_second: float | None = Field(None, gt=0, description="None: unlimited.")

    def action_for(self, recipient: str) -> str | None:
        for rule in self.rules:
            if re.search(rule.pattern, recipient):
                return rule.action
        if self.failure_rate and random.random() < self.failure_rate:
            return "http:503"
        return None


class WebhookSandboxConfig(SandboxConfig):
    """A provider sandbox that sends signed delivery webhooks after accepting a message."""

    webhooks: bool = True
    webhook_delay_ms: float = Field(20.0, ge=0, le=600_000)
    delivered: bool = Field(True, description="Follow 'sent' with 'delivered' (else stop at sent).")


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    scheme: str = "http"
    host: str = ""

    def form(self) -> list[tuple[str, str]]:
        if not self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return []
        return parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query))


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-serialisable, bytes, or None (empty)
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        head = [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        if self.body is None:
            return b"", head
        if isinstance(self.body, bytes):
            return self.body, head
        return orjson.dumps(self.body), [(b"content-type", b"application/json"), *head]


class TokenBucket:
    """Throughput limit: `rate` tokens per second, bursts up to `rate` (at least one request, so a
    rate below 1/s still lets one through every 1/rate seconds)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._burst = max(rate, 1.0)
        self._clock = clock
        self._tokens = self._burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


@dataclass(frozen=True, slots=True)
class Redelivery:
    """How a provider redelivers a webhook our endpoint did not take: `attempts` in all, the waits
    between them doubling from `first_delay` up to `max_delay` (compressed from the providers' hours
    and days to seconds); `on_status` also retries a 5xx or 429 answer, else only a connection that
    failed. Timeouts are the provider's own."""

    attempts: int = 8
    first_delay: float = 0.5
    max_delay: float = 8.0
    on_status: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 10.0

    def retries(self, status: int | None) -> bool:
        """Whether an answer (None: no connection) is tried again."""
        return status is None or (self.on_status and (status >= 500 or status == 429))


class WebhookSender:
    """Posts delivery webhooks in the background, bounded, on one pooled client, redelivering the
    ones our endpoint did not take as the provider does (`Redelivery`)."""

    def __init__(self, limit: int = 64, redelivery: Redelivery | None = None) -> None:
        self._client: httpx.AsyncClient | None = None
        self.redelivery = redelivery or Redelivery()
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent: Counter[str] = Counter()
        self.failures = 0  # POSTs that got no answer, first attempts and redeliveries alike

    def schedule(
        self,
        delay: float,
        posts: list[tuple[str, bytes, dict[str, str]]],
        ready: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Post each in turn, `delay` apart; with `ready` (an SNS subscription awaiting its
        confirmation), only once it says True: else they are dropped, as the provider would."""
        task = asyncio.get_running_loop().create_task(self._deliver(delay, posts, ready))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        delay: float,
        posts: list[tuple[str, bytes, dict[str, str]]],
        ready: Callable[[], Awaitable[bool]] | None,
    ) -> None:
        if ready is not None and not await ready():
            self.sent["not_subscribed"] += len(posts)
            return
        async with self._slots:
            for url, body, headers in posts:
                await asyncio.sleep(delay)
                await self._redeliver(url, body, headers)

    async def _redeliver(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        """POST until taken or the provider would give up; `sent` counts the last answer, and
        `redelivered` the attempts after the first."""
        policy, wait = self.redelivery, self.redelivery.first_delay
        for attempt in range(1, policy.attempts + 1):
            status = await self._post(url, body, headers, count=False)
            if attempt == policy.attempts or not policy.retries(status):
                self.sent["error" if status is None else str(status)] += 1
                return
            self.sent["redelivered"] += 1
            await asyncio.sleep(wait)
            wait = min(2 * wait, policy.max_delay)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], count: bool = True) -> int | None:
        """POST one webhook; its status, None when it could not be delivered. `count`: in `sent`."""
        if self._client is None:
            policy = self.redelivery
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout))
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as error:
            self.failures += 1
            level = logging.DEBUG if self.failures > 1 else logging.WARNING  # say it once
            log.log(level, "sandbox webhook failed", extra={"fields": {"url": url, "error": repr(error)}})
            return None
        if count:
            self.sent[str(response.status_code)] += 1
        return response.status_code

    async def post_now(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        """One POST outside the webhook counts (a subscription handshake), on the same client."""
        return await self._post(url, body, headers, count=False)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for the webhooks in flight (tests), then stop waiting."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()


class SandboxApp:
    """A bare ASGI app: subclasses implement `handle`; the /_sandbox routes are shared."""

    config_model: type[SandboxConfig] = SandboxConfig
    name = "sandbox"
    redelivery = Redelivery()  # how the provider retries a webhook we did not take

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or self.default_config()
        self.webhooks = WebhookSender(redelivery=self.redelivery)
        self.stats: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()  # per recipient
        self.failed: Counter[str] = Counter()  # per recipient: refused by a rule (or failure_rate)
        self._bucket: TokenBucket | None = None

    def default_config(self) -> SandboxConfig:
        return self.config_model()

    def send_webhooks_to(self, url: str | None) -> None:
        """Where the account's delivery webhooks go (the full URL of our endpoint); providers that
        take the callback URL with each message have nothing to set."""

    async def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def record(self, outcome: str, recipient: str) -> None:
        """Count a send the rules decided: by outcome ("accepted", "error:21211", "timeout", …), and
        by recipient, accepted or failed."""
        self.stats[outcome] += 1
        (self.accepted if outcome == "accepted" else self.failed)[recipient] += 1

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        request = await _request(scope, receive)
        reply = await self._route(request)
        body, head = reply.encoded()
        head.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": head})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, request: Request) -> Reply:
        if request.path.startswith("/_sandbox/"):
            return self._control(request)
        try:
            return await self.handle(request)
        except Exception:  # a sandbox bug must show as a 500, not kill the connection
            log.exception("sandbox handler failed")
            return Reply(500, {"error": "sandbox bug"})

    def _control(self, request: Request) -> Reply:
        if request.path == "/_sandbox/config" and request.method == "PUT":
            try:
                self.config = self.config_model.model_validate(request.json())
            except ValueError as error:
                return Reply(422, {"error": str(error)})
            self._bucket = None
        if request.path == "/_sandbox/config":
            return Reply(200, self.config.model_dump())
        if request.path == "/_sandbox/stats":
            return Reply(200, self.stats_document())
        if request.path == "/_sandbox/reset" and request.method == "POST":
            for counter in (self.stats, self.accepted, self.failed):
                counter.clear()
            self.webhooks.sent.clear()
            return Reply(200, {})
        return Reply(404, {"error": f"no route {request.method} {request.path}"})

    def stats_document(self) -> dict[str, Any]:
        recipients = {"accepted": dict(self.accepted), "failed": dict(self.failed)}
        return {"requests": dict(self.stats), "webhooks": dict(self.webhooks.sent), "recipients": recipients}

    def rate_limited(self) -> bool:
        rate = self.config.rate_per_second
        if rate is None:
            return False
        if self._bucket is None or self._bucket.rate != rate:
            self._bucket = TokenBucket(rate)
        return not self._bucket.take()

    async def delay(self) -> None:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)

    async def hold(self) -> None:
        await asyncio.sleep(self.config.timeout_hold_seconds)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.webhooks.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _request(scope: dict[str, Any], receive: Receive) -> Request:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return Request(
        method=scope["method"],
        path=scope["path"],
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=b"".join(chunks),
        scheme=scope.get("scheme", "http"),
        host=headers.get("host", ""),
    )
