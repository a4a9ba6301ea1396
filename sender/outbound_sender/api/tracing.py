"""The API's server spans (docs/tracing.md): one per HTTP request, added only with tracing on.

Named `METHOD /route/{template}` once routed (the path's own values, such as a message id, stay out
of the name), continuing the caller's trace when the request carries a W3C traceparent header. The
routes run inside it, so a message created there stores this span's context (store/message_api.py).
Attributes: method, route, status, and what the routes put in the request state (organisation,
message id). Never a header value, query or body. Health probes and metrics scrapes get no span.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outbound_sender import tracing

# Probes and scrapes: every few seconds from the kubelet and Prometheus, about no message.
UNTRACED = frozenset({"/healthz", "/readyz", "/metrics", "/actuator/prometheus"})


class TraceRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())}
        attributes = {"http.request.method": method, "url.scheme": scope.get("scheme", "http")}
        with tracing.server_span(method, {"traceparent": headers.get("traceparent", "")}, attributes) as span:
            status = 500

            async def send_observed(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_observed)
            finally:
                _finish(span, scope, method, status)


def _finish(span: tracing.SpanHandle, scope: Scope, method: str, status: int) -> None:
    route = getattr(scope.get("route"), "path", None)
    if route is not None:
        span.rename(f"{method} {route}")
        span.set("http.route", route)
    span.set("http.response.status_code", status)
    state: dict[str, Any] = scope.get("state") or {}
    for key, name in (("org_id", "outbound.org_id"), ("message_id", "outbound.message.id")):
        value = state.get(key)
        if isinstance(value, str | int):
            span.set(name, value)
    if status >= 500:
        span.failed(str(status))
