"""The API's HTTP server: uvicorn with httptools, guarded against clients that hold memory or sockets.

uvicorn's httptools protocol buffers a request head without bound, waits for the rest of a half-sent
request forever, and accepts any number of connections. GuardedHttpTools adds, per process:

* a request head (request line and headers) over `max_header_bytes` is answered 431 and the
  connection closed, so a client cannot make the parser buffer more than about one read beyond it;
* a request must arrive whole within `request_timeout_seconds` of its first byte (or of the
  connection, for a client that sends nothing): else 408 (or, once the body has started, a plain
  close, which the app sees as a disconnect) and the connection is closed;
* at most `max_connections` open connections: a request on one more is answered 503 with Retry-After
  and `Connection: close`.

Error answers carry the API's JSON error body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from outbound_sender.api.settings import ApiSettings

log = logging.getLogger("OutboundMessageService")
BUSY_RETRY_AFTER_SECONDS = 1
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def _error_json(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "fields": []}, "correlation_id": None}).encode()


def _raw_response(status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    head = [b"HTTP/1.1 %d %s" % (status, _REASONS[status])]
    headers = ((b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *extra)
    head += [name + b": " + value for name, value in headers]
    head.append(b"connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _refusal(status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> ASGIApp:
    """An ASGI app answering `status` with `body` and closing the connection."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *extra]
    headers.append((b"connection", b"close"))

    async def app(_scope: Any, _receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


_BUSY = _refusal(
    503,
    _error_json("server_busy", "too many open connections; retry later"),
    ((b"retry-after", b"%d" % BUSY_RETRY_AFTER_SECONDS),),
)


class GuardedHttpTools(HttpToolsProtocol):
    """HttpToolsProtocol with a head size limit, a whole-request deadline and a connection cap; the
    limits are class attributes set by `guarded_protocol`."""

    max_header_bytes = 64 * 1024
    request_timeout_seconds = 30.0
    max_connections = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0  # bytes received while the head is incomplete (bounds the parser's buffer)
        self._head_size = 0  # exact size of the parsed request line and headers
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._deadline is None:
                self._arm_deadline()
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            message = f"the request line and headers exceed {self.max_header_bytes} bytes"
            self._refuse(431, _error_json("headers_too_large", message))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        refusal = None
        if self._head_size > self.max_header_bytes:
            message = f"the request line and headers exceed {self.max_header_bytes} bytes"
            refusal = _refusal(431, _error_json("headers_too_large", message))
        elif len(self.connections) > self.max_connections or len(self.tasks) >= self.max_connections:
            log.warning(
                "OutboundMessageService connection cap reached", extra={"fields": {"cap": self.max_connections}}
            )
            refusal = _BUSY
        if refusal is None:
            super().on_headers_complete()
            return
        app, self.app = self.app, refusal
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm_deadline()
        self._in_head = True
        self._head_bytes = 0

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._deadline = self.loop.call_later(self.request_timeout_seconds, self._request_timed_out)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head and (self.cycle is None or self.cycle.response_complete):
            message = f"the request did not arrive within {self.request_timeout_seconds:g} s"
            self._refuse(408, _error_json("request_timeout", message))
        else:  # the app has the request and maybe answered: it sees a disconnect
            self.transport.close()

    def _refuse(self, status: int, body: bytes) -> None:
        self._disarm_deadline()
        self.transport.write(_raw_response(status, body))
        self.transport.close()


def guarded_protocol(settings: ApiSettings) -> type[GuardedHttpTools]:
    """A GuardedHttpTools subclass carrying `settings`' limits."""
    limits = {
        "max_header_bytes": settings.max_header_bytes,
        "request_timeout_seconds": settings.request_timeout_seconds,
        "max_connections": settings.max_connections,
    }
    return type("GuardedHttpToolsProtocol", (GuardedHttpTools,), limits)


def api_server(fastapi_app: Any, host: str, port: int, settings: ApiSettings | None = None) -> uvicorn.Server:
    """uvicorn with the guarded httptools protocol; the event loop is the caller's (uvloop under
    `outbound`)."""
    protocol = guarded_protocol(settings or ApiSettings())
    config = uvicorn.Config(
        fastapi_app, host=host, port=port, http=protocol, lifespan="on", access_log=False, log_config=None
    )
    return uvicorn.Server(config)
