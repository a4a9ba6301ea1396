"""Correlation ids, request logs and request metrics, as one pure ASGI middleware (no per-request
task or body copy, unlike BaseHTTPMiddleware).

X-Correlation-ID is taken from the request when it is well formed (else one is generated), returned
on every response, kept in scope["state"] for the routes (stored on created messages, put in error
bodies) and written on the request's log line as correlationId= and correlation_id=.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbound_sender.api.metrics import ApiMetrics
from outbound_sender.api.schemas import CORRELATION_ID

log = logging.getLogger("OutboundMessageService")
HEADER = b"x-correlation-id"
_VALID = re.compile(CORRELATION_ID)


def new_correlation_id() -> str:
    """32 hex digits: no separators, so the log masking of digit runs never rewrites it."""
    return uuid.uuid4().hex


def correlation_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            text = value.decode("latin-1")
            return text if _VALID.match(text) else new_correlation_id()
    return new_correlation_id()


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics | None = None, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        cid = correlation_id_of(scope)
        state = scope.setdefault("state", {})
        state["correlation_id"] = cid
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (HEADER, cid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, state, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        if self.metrics is not None:
            self.metrics.request_duration.labels(scope["method"], route, str(status)).observe(seconds)
        if self.access_log:
            log.info(f"{scope['method']} {route} {status}", extra={"fields": _fields(state, status, seconds)})


def _fields(state: dict[str, Any], status: int, seconds: float) -> dict[str, Any]:
    cid = state["correlation_id"]
    fields: dict[str, Any] = {"correlationId": cid, "correlation_id": cid, "status": status}
    fields["durationMs"] = round(seconds * 1000, 1)
    for key, name in (("org_id", "orgId"), ("message_id", "messageId"), ("error_code", "errorCode")):
        if state.get(key) is not None:
            fields[name] = state[key]
    return fields


class BodyLimit:
    """Refuse request bodies over `max_body_size` bytes with the API's JSON error (413): by the declared
    Content-Length before reading, or, for a chunked body, as soon as the count passes the limit (the
    app is then told the client left, and whatever it answers is dropped)."""

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_body_size:
            await self._reject(scope, send)
            return
        received, rejected = 0, False

        async def counted() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_size:
                rejected = True
                await self._reject(scope, send)
                return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not rejected:
                await send(message)

        await self.app(scope, counted, guarded)

    async def _reject(self, scope: Scope, send: Send) -> None:
        from outbound_sender.api.schemas import ErrorBody, ErrorInfo

        state = scope.get("state") or {}
        info = ErrorInfo(code="body_too_large", message=f"request body over {self.max_body_size} bytes", fields=[])
        body = ErrorBody(error=info, correlation_id=state.get("correlation_id")).model_dump_json().encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
