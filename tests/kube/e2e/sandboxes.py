"""The provider sandboxes as an external service the pods reach: Twilio, SendGrid, WhatsApp and
Vonage (sender/outbound_sender/sandboxes, their real wire formats) served over https on the node's
HOST_ADDRESS with a certificate of the plane's CA, from one thread of the test process. The operator
tests serve some of them (SendGrid and SES) on loopback to the workers they run on the host.

Every provider API call is recorded with its time, answer status, headers and body, so the test
counts what each provider accepted, message by message (each test message carries a unique token in
its text), when the last one came, and how it was signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from outbound_sender.providers import registry
from outbound_sender.sandboxes.base import SandboxApp
from tests.kube.node import HOST_ADDRESS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
TOKEN = re.compile(rb"e2e(\d{6})x")
PROVIDERS = ("twilio", "sendgrid", "whatsapp", "vonage")


def token(number: int) -> str:
    """The unique mark of test message ``number`` in its text (survives form and JSON encoding)."""
    return f"e2e{number:06d}x"


@dataclass(frozen=True)
class Call:
    at: float  # time.time() when the answer was sent
    method: str
    path: str
    status: int
    tokens: tuple[int, ...]
    body: bytes = b""  # the request as sent (the test reads the sender's identity from it)
    headers: tuple[tuple[str, str], ...] = ()  # as sent, names in lower case

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)

    @property
    def accepted(self) -> bool:
        """A send the provider took (every provider's send is a POST answered 2xx)."""
        return self.method == "POST" and 200 <= self.status < 300


class Recorded:
    """ASGI wrapper of a sandbox: keeps every API call (not the /_sandbox control routes)."""

    def __init__(self, app: SandboxApp) -> None:
        self.app = app
        self.calls: list[Call] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith("/_sandbox/"):
            await self.app(scope, receive, send)  # type: ignore[arg-type]
            return
        body = bytearray()
        status = 0

        async def keep(message: Message = None) -> Message:  # type: ignore[assignment]
            message = await receive()
            body.extend(message.get("body", b""))
            return message

        async def see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, keep, see)  # type: ignore[arg-type]
        tokens = tuple(int(found) for found in TOKEN.findall(bytes(body)))
        headers = tuple((key.decode("latin-1").lower(), value.decode("latin-1")) for key, value in scope["headers"])
        call = Call(time.time(), str(scope["method"]), str(scope["path"]), status, tokens, bytes(body[:8192]), headers)
        self.calls.append(call)

    def accepted(self, since: float = 0.0) -> list[Call]:
        return [call for call in list(self.calls) if call.accepted and call.at >= since]


class ProviderSandboxes:
    """The sandboxes of ``providers`` on ``host`` over https, until :meth:`stop`: ``HOST_ADDRESS``
    for pods of the test node, loopback for workers run as host processes (tests/kube/operator/workers.py)."""

    def __init__(
        self, certificate: Path, key: Path, host: str = HOST_ADDRESS, providers: tuple[str, ...] = PROVIDERS
    ) -> None:
        self.certificate, self.key, self.host = certificate, key, host
        apps = registry.sandbox_apps(None)
        self.apps: dict[str, SandboxApp] = {name: apps[name] for name in providers}
        self.recorded = {name: Recorded(app) for name, app in self.apps.items()}
        self.ports: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="provider-sandboxes", daemon=True)
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[Future[None]] = []

    def start(self) -> ProviderSandboxes:
        self._thread.start()
        for name, app in self.recorded.items():
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, 0))
            self.ports[name] = int(listener.getsockname()[1])
            config = uvicorn.Config(
                app,
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="on",
                ssl_certfile=str(self.certificate),
                ssl_keyfile=str(self.key),
                timeout_graceful_shutdown=5,  # a request held by a `timeout` rule must not hold the stop
            )
            server = uvicorn.Server(config)
            self._servers.append(server)
            self._tasks.append(asyncio.run_coroutine_threadsafe(server.serve(sockets=[listener]), self._loop))
        deadline = time.monotonic() + 30
        while not all(server.started for server in self._servers):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the provider sandboxes did not start within 30 s")
            time.sleep(0.05)
        return self

    def url(self, provider: str) -> str:
        return f"https://{self.host}:{self.ports[provider]}"

    def send_webhooks_to(self, base: str) -> None:
        """The accounts' webhook settings (SendGrid, WhatsApp): our router's public URL plus each path."""
        for name, app in self.apps.items():
            webhook = registry.entry(name).webhook
            if webhook is not None:
                app.send_webhooks_to(base.rstrip("/") + webhook.path)

    def configure(self, provider: str, **changes: Any) -> None:
        """Change a sandbox's behaviour (its /_sandbox/config), e.g. ``latency_ms``."""
        app = self.apps[provider]
        self._loop.call_soon_threadsafe(setattr, app, "config", app.config.model_copy(update=changes))

    def accepted_tokens(self) -> Counter[int]:
        """How many times each test message was accepted, all providers together."""
        return Counter(
            number for recorded in self.recorded.values() for call in recorded.accepted() for number in call.tokens
        )

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        for task in self._tasks:
            with contextlib.suppress(Exception):  # stopping: a server that failed has stopped too
                task.result(timeout=15)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()
