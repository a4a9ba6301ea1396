"""OpenTelemetry tracing: off by default, on with OUTBOUND_TRACING_ENABLED=true (docs/tracing.md).

One trace follows a message from the API request that created it to the worker's provider call and
the delivery receipts the provider sends back later:

    POST /v1/messages            SERVER   the API request (api/tracing.py); its context is stored on
                                          the message row (outbound_message.traceparent, W3C form)
    └─ outbound.send             CONSUMER each claim of the message by a worker, child of the stored
       │                                  context: provider, channel, message id, attempt, outcome
       └─ POST                   CLIENT   the provider's HTTP call (providers/transport.py)
    └─ outbound.receipt          CONSUMER each recorded delivery receipt, child of the stored
                                          context, linked to the webhook request's own span

Off, nothing of OpenTelemetry is imported and every hook below is one test of a module global: the
API adds no middleware, no traceparent is written, the worker's spans are a shared no-op object.
The opentelemetry packages are the `tracing` extra (pip install 'outbound-messaging[tracing]').

On, the SDK reads the standard OTEL_* variables itself: OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*. Spans leave over OTLP/HTTP
(protobuf); another OTEL_EXPORTER_OTLP(_TRACES)_PROTOCOL is refused at start-up.

No recipient ever goes into a span: attributes name the message by id, never by its `to`; URLs are
reduced to host and port (paths and queries can hold account ids and callback parameters).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from outbound_sender.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

AttributeValue = str | int | float | bool
OTLP_PROTOCOL = "http/protobuf"
INSTALL_HINT = "pip install 'outbound-messaging[tracing]'"
SHUTDOWN_SECONDS = 5.0  # at most this long spent exporting buffered spans when the process stops


class TracingSettings(BaseSettings):
    """OUTBOUND_TRACING_*; the exporter, service name and sampler follow the standard OTEL_* variables."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_TRACING_", extra="ignore")

    enabled: bool = Field(
        False,
        description="Record OpenTelemetry traces and export them over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT). "
        "Needs the `tracing` extra; off: nothing of OpenTelemetry is imported.",
    )


@dataclass(slots=True)
class _Tracing:
    provider: TracerProvider
    tracer: Tracer


_state: _Tracing | None = None
# Attributes the worker's send span hands to the provider's HTTP span beneath it (same task).
_NO_ATTRIBUTES: Mapping[str, AttributeValue] = MappingProxyType({})
_call_attributes: contextvars.ContextVar[Mapping[str, AttributeValue]] = contextvars.ContextVar(
    "outbound_call_attributes", default=_NO_ATTRIBUTES
)


def enabled() -> bool:
    return _state is not None


def _tracer() -> Tracer:
    assert _state is not None
    return _state.tracer


def setup_tracing(
    service: str, settings: TracingSettings | None = None, *, exporter: SpanExporter | None = None
) -> bool:
    """Start tracing when OUTBOUND_TRACING_ENABLED is true; return whether it is on.

    `service` names the process (service.name `outbound-<service>`) unless OTEL_SERVICE_NAME or
    OTEL_RESOURCE_ATTRIBUTES name it. `exporter` replaces OTLP and gets every span as it ends
    (tests: an in-memory exporter); OTLP spans are batched and flushed by shutdown_tracing()."""
    global _state  # noqa: PLW0603 (one tracer per process, like the logging set-up)
    settings = settings or TracingSettings()
    if not settings.enabled:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as error:
        raise ConfigError(f"OUTBOUND_TRACING_ENABLED=true needs the OpenTelemetry packages: {INSTALL_HINT}") from error
    if exporter is None:
        _check_protocol(os.environ)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor: Any = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": f"outbound-{service}"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    shutdown_tracing()
    _state = _Tracing(provider, provider.get_tracer("outbound_sender"))
    return True


def _check_protocol(environ: Mapping[str, str]) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = environ.get(name, "").strip()
        if value and value != OTLP_PROTOCOL:
            raise ConfigError(f"{name}={value!r}: outbound exports traces over OTLP/HTTP only ({OTLP_PROTOCOL})")
        if value:
            return


def shutdown_tracing(timeout: float = SHUTDOWN_SECONDS) -> None:
    """Export what is buffered and stop (at process exit; tests between runs). A collector that is
    down makes the exporter retry for its own timeout: the process waits `timeout` seconds at most,
    then leaves the rest behind (the export threads are daemons)."""
    global _state
    state, _state = _state, None
    if state is not None:
        stopping = threading.Thread(target=state.provider.shutdown, name="tracing-shutdown", daemon=True)
        stopping.start()
        stopping.join(timeout)


# ---- spans ------------------------------------------------------------------------------------
class SpanHandle:
    """What the code around a span may do to it; the off state's handle does nothing."""

    __slots__ = ()

    def set(self, key: str, value: AttributeValue | None) -> None:
        """Set an attribute (None: left unset)."""

    def failed(self, description: str) -> None:
        """Mark the span's operation as failed (status ERROR)."""

    def rename(self, name: str) -> None:
        """Name the span once its operation is known (an HTTP request, after routing)."""


class _LiveSpan(SpanHandle):
    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def set(self, key: str, value: AttributeValue | None) -> None:
        if value is not None:
            self.span.set_attribute(key, value)

    def failed(self, description: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.set_status(Status(StatusCode.ERROR, description))

    def rename(self, name: str) -> None:
        self.span.update_name(name)


NO_SPAN = SpanHandle()
_NO_SPAN_CONTEXT: AbstractContextManager[SpanHandle] = contextlib.nullcontext(NO_SPAN)


def current_traceparent() -> str | None:
    """The current span's context in W3C form (what the API stores on a message row); None when off."""
    if _state is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def _parent(traceparent: str | None) -> Any:
    """The OpenTelemetry context a stored traceparent names (an empty one when missing or invalid)."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not traceparent:
        return Context()
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent}, context=Context())


def send_span(
    traceparent: str | None, attributes: Callable[[], Mapping[str, AttributeValue]]
) -> AbstractContextManager[SpanHandle]:
    """The worker's span around one send of a stored message, child of the context stored with it.
    `attributes` is called only when tracing is on."""
    if _state is None:
        return _NO_SPAN_CONTEXT
    return _send_span(traceparent, attributes())


@contextlib.contextmanager
def _send_span(traceparent: str | None, attributes: Mapping[str, AttributeValue]) -> Iterator[SpanHandle]:
    from opentelemetry.trace import SpanKind

    tracer = _tracer()
    with tracer.start_as_current_span(
        "outbound.send", context=_parent(traceparent), kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        handle = _LiveSpan(span)
        token = _call_attributes.set(attributes)
        try:
            yield handle
        finally:
            _call_attributes.reset(token)


def call_attributes(**attributes: AttributeValue) -> None:
    """Add attributes (e.g. the provider chosen) that the provider's HTTP span will carry too."""
    if _state is not None:
        _call_attributes.set({**_call_attributes.get(), **attributes})


def client_span(method: str, host: str, port: int | None) -> AbstractContextManager[SpanHandle]:
    """A provider HTTP call, child of the current span (the worker's send)."""
    if _state is None:
        return _NO_SPAN_CONTEXT
    return _client_span(method, host, port)


@contextlib.contextmanager
def _client_span(method: str, host: str, port: int | None) -> Iterator[SpanHandle]:
    from opentelemetry.trace import SpanKind

    attributes: dict[str, AttributeValue] = {
        **_call_attributes.get(),
        "http.request.method": method,
        "server.address": host,
    }
    if port is not None:
        attributes["server.port"] = port
    with _tracer().start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield _LiveSpan(span)


@contextlib.contextmanager
def server_span(
    name: str, headers: Mapping[str, str], attributes: Mapping[str, AttributeValue]
) -> Iterator[SpanHandle]:
    """An incoming HTTP request (tracing on only): continues the caller's trace from its
    traceparent header, if any."""
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract(dict(headers))
    with _tracer().start_as_current_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes) as span:
        yield _LiveSpan(span)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One delivery receipt recorded for a message, as its span shows it."""

    message_id: int
    traceparent: str | None
    delivery_status: str | None


def receipt_spans(provider: str, channel: str, receipts: Sequence[Receipt], started_ns: int) -> None:
    """One span per recorded receipt in its message's trace, linked to the current span (the
    webhook request, which the provider started without our trace context)."""
    if _state is None or not receipts:
        return
    from opentelemetry.trace import Link, SpanKind, get_current_span

    request = get_current_span().get_span_context()
    links = [Link(request)] if request.is_valid else []
    ended = time.time_ns()
    for receipt in receipts:
        attributes: dict[str, AttributeValue] = {
            "outbound.message.id": receipt.message_id,
            "outbound.provider": provider,
            "outbound.channel": channel,
        }
        if receipt.delivery_status:
            attributes["outbound.delivery_status"] = receipt.delivery_status
        span = _tracer().start_span(
            "outbound.receipt",
            context=_parent(receipt.traceparent),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            start_time=started_ns,
        )
        span.end(end_time=ended)
