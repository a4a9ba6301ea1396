"""A client's callback endpoint for the tests: a real HTTP server (uvicorn) on loopback that records
every request and can be told to fail, or to hold its answers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from outbound_sender.callbacks.dispatcher import CallbackDispatcher
from outbound_sender.callbacks.settings import CallbackSettings
from outbound_sender.callbacks.targets import Resolver, system_resolver
from outbound_sender.embedded import free_port
from outbound_sender.metrics import Metrics

Scope = dict[str, Any]


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # monotonic

    @property
    def document(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    @property
    def event_id(self) -> str:
        return self.headers["outbound-event-id"]


class Receiver:
    """Answers 200, or `failing_status` while `failing`, after `hold` is set (when given)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answers: list[tuple[str, int]] = []  # (event id, status), once answered
        self.failing = False
        self.failing_status = 503
        self.hold: asyncio.Event | None = None
        self.url = ""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request = Request(scope["path"], headers, body, time.monotonic())
        self.requests.append(request)
        if self.hold is not None:
            await self.hold.wait()
        status = self.failing_status if self.failing else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})
        self.answers.append((request.event_id, status))

    @property
    def answered(self) -> int:
        return len(self.answers)

    def refusals(self, event_id: str) -> int:
        return sum(1 for e, status in self.answers if e == event_id and status != 200)

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[Request]:
        """Until at least `count` distinct events arrived (redeliveries are counted once)."""
        async with asyncio.timeout(timeout):
            while len({r.event_id for r in self.requests}) < count:
                await asyncio.sleep(0.02)
        return self.requests


@contextlib.asynccontextmanager
async def receiving(host: str = "127.0.0.1") -> AsyncIterator[Receiver]:
    receiver = Receiver()
    port = free_port()
    config = uvicorn.Config(receiver, host=host, port=port, log_config=None, lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                await asyncio.sleep(0.01)
        receiver.url = f"http://{host}:{port}"
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def dispatching(
    dsn: str, settings: CallbackSettings, metrics: Metrics | None = None, resolver: Resolver = system_resolver
) -> AsyncIterator[CallbackDispatcher]:
    stop = asyncio.Event()
    dispatcher = CallbackDispatcher(dsn, settings, metrics or Metrics(), resolver=resolver)
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 90)


def signed_by(request: Request, secret: str) -> bool:
    """The documented recipe, written independently of callbacks.signing: HMAC-SHA256 keyed with the
    secret's UTF-8 bytes over "<t>.<raw body>", hex, compared with each v1 of the header."""
    fields = [part.split("=", 1) for part in request.headers["outbound-signature"].split(",")]
    timestamps = [value for key, value in fields if key == "t"]
    assert len(timestamps) == 1, request.headers["outbound-signature"]
    expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, value in fields if key == "v1")


def signatures(request: Request) -> int:
    return sum(1 for part in request.headers["outbound-signature"].split(",") if part.startswith("v1="))
