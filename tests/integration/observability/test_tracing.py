"""Tracing (docs/tracing.md): one trace from the API request to the worker's provider call and the
delivery receipts, through the trace context stored on the message row; nothing when off."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import asyncpg
import pytest
from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from outbound_sender import cli, tracing
from outbound_sender.config import load_settings
from outbound_sender.embedded import free_port
from outbound_sender.errors import ConfigError
from outbound_sender.metrics import Metrics
from outbound_sender.providers.transport import provider_client
from outbound_sender.providers.twilio import TwilioProvider
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes.base import Rule
from outbound_sender.webhooks.router import router as webhook_router
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.service import OutboundJobWorker
from outbound_sender.worker.settings import WorkerSettings
from tests.integration.api.conftest import SMS, Api, serving
from tests.integration.providers.conftest import serve, webhook_config
from tests.workers import FAST_RETRY, wait_for

RECIPIENT_DIGITS = SMS["to"].lstrip("+")  # +14155552671: in no span, whole or in part beyond the masked tail


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.setup_tracing("test", tracing.TracingSettings(enabled=True), exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


@pytest.fixture
async def api(db_dsn: str) -> AsyncIterator[Api]:
    """The API alone; built after `spans` when a test asks for both (tracing is read at start-up)."""
    async with serving(db_dsn) as served:
        yield served


@contextlib.asynccontextmanager
async def api_with_webhooks(db_dsn: str) -> AsyncIterator[Api]:
    """The API with the delivery webhooks mounted, as `outbound api` serves them."""
    served: list[Api] = []
    hooks = webhook_router(webhook_config(), lambda: served[0].app.state.api.pool, metrics=Metrics())
    async with serving(db_dsn, extra_routers=[hooks]) as api:
        served.append(api)
        yield api


@contextlib.asynccontextmanager
async def twilio_worker(db_dsn: str, sandbox_url: str, webhooks_url: str) -> AsyncIterator[None]:
    """A worker sending SMS through the Twilio client on the production transport."""
    client = provider_client(4, connect_timeout=2.0, read_timeout=5.0)
    provider = TwilioProvider(client, twilio_sandbox.account(sandbox_url), callback_base=webhooks_url)
    settings = WorkerSettings(poll_interval_ms=50, recovery_interval_ms=500, lease_seconds=30)
    worker = OutboundJobWorker(db_dsn, Dispatcher([provider]), settings=settings, retry=FAST_RETRY, metrics=Metrics())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def finished(exporter: InMemorySpanExporter, name: str, count: int, timeout: float = 20.0) -> list[ReadableSpan]:
    """The first `count` ended spans named `name` (they end just after the rows they describe change)."""
    async with asyncio.timeout(timeout):
        while True:
            found = [s for s in exporter.get_finished_spans() if s.name == name]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)


def ctx(span: ReadableSpan) -> SpanContext:
    context = span.get_span_context()
    assert context is not None
    return context


def traceparent_of(span: ReadableSpan) -> str:
    context = ctx(span)
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def no_recipient_in(spans: Sequence[ReadableSpan]) -> None:
    for span in spans:
        texts = [span.name, *(f"{k}={v!s}" for k, v in (span.attributes or {}).items())]
        for text in texts:
            assert RECIPIENT_DIGITS[:6] not in text, (span.name, text)


async def test_one_trace_from_the_api_request_to_the_provider_call_and_the_receipts(
    spans: InMemorySpanExporter, db_dsn: str, db: asyncpg.Connection
) -> None:
    sandbox = twilio_sandbox.TwilioSandbox()
    sandbox.config.rules = []
    async with serve(sandbox) as sandbox_url, api_with_webhooks(db_dsn) as api:
        async with api.client() as client:
            created = await client.post("/v1/messages", json=SMS, headers={"X-Correlation-ID": "order-4711"})
        assert created.status_code == 201, created.text
        message_id = created.json()["id"]
        async with twilio_worker(db_dsn, sandbox_url, f"{api.url}/webhooks"):
            query = "SELECT delivery_status = 'DELIVERED' FROM outbound_message WHERE id = $1"
            await wait_for(db, query, message_id, timeout=30)
            receipts = await finished(spans, "outbound.receipt", 2)
        stored = await db.fetchval("SELECT traceparent FROM outbound_message WHERE id = $1", message_id)

    [request] = [s for s in spans.get_finished_spans() if s.name == "POST /v1/messages"]
    [send] = await finished(spans, "outbound.send", 1)
    [call] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    trace_id = ctx(request).trace_id
    # The row keeps the API request's context; every later span of the message descends from it.
    assert stored == traceparent_of(request)
    assert request.kind is SpanKind.SERVER
    assert request.resource.attributes["service.name"] == "outbound-test"
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/v1/messages"
    assert request.attributes["http.response.status_code"] == 201
    assert request.attributes["outbound.message.id"] == message_id
    assert {ctx(s).trace_id for s in [send, call, *receipts]} == {trace_id}
    assert parent_id(send) == ctx(request).span_id
    assert parent_id(call) == ctx(send).span_id
    assert all(parent_id(r) == ctx(request).span_id for r in receipts)

    assert send.kind is SpanKind.CONSUMER
    assert dict(send.attributes or {}) == {
        "outbound.message.id": message_id,
        "outbound.channel": "SMS",
        "outbound.org_id": "acme",
        "outbound.attempt": 1,
        "outbound.correlation_id": "order-4711",
        "outbound.provider": "twilio",
        "outbound.outcome": "SENT",
        "http.response.status_code": 201,
    }
    assert call.attributes is not None
    assert call.name == "POST"
    assert call.attributes["outbound.provider"] == "twilio"
    assert call.attributes["outbound.message.id"] == message_id
    assert call.attributes["outbound.channel"] == "SMS"
    assert call.attributes["server.address"] == "127.0.0.1"
    assert call.attributes["http.response.status_code"] == 201

    assert sorted(str((r.attributes or {})["outbound.delivery_status"]) for r in receipts) == ["DELIVERED", "SENT"]
    for receipt in receipts:
        assert (receipt.attributes or {})["outbound.message.id"] == message_id
        assert (receipt.attributes or {})["outbound.provider"] == "twilio"
        # Linked to the webhook request, which the provider started in a trace of its own.
        [link] = receipt.links
        [webhook] = [s for s in spans.get_finished_spans() if ctx(s) == link.context]
        assert webhook.name == "POST /webhooks/twilio/status"
        assert ctx(webhook).trace_id != trace_id
    no_recipient_in(spans.get_finished_spans())


async def test_each_attempt_is_a_send_span_of_the_same_trace_and_failures_are_errors(
    spans: InMemorySpanExporter, db_dsn: str, db: asyncpg.Connection
) -> None:
    sandbox = twilio_sandbox.TwilioSandbox()
    sandbox.config.rules = [Rule(pattern=".", action="http:503")]
    async with serve(sandbox) as sandbox_url, api_with_webhooks(db_dsn) as api:
        async with api.client() as client:
            created = await client.post("/v1/messages", json=SMS)
        async with twilio_worker(db_dsn, sandbox_url, f"{api.url}/webhooks"):
            sends = await finished(spans, "outbound.send", 2)
    [request] = [s for s in spans.get_finished_spans() if s.name == "POST /v1/messages"]
    calls = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert (request.attributes or {})["outbound.message.id"] == created.json()["id"]
    assert {ctx(s).trace_id for s in [*sends, *calls]} == {ctx(request).trace_id}
    assert {parent_id(s) for s in sends} == {ctx(request).span_id}
    assert [(s.attributes or {})["outbound.attempt"] for s in sends[:2]] == [1, 2]
    for send in sends[:2]:
        assert (send.attributes or {})["outbound.outcome"] == "RETRY"
        assert (send.attributes or {})["outbound.error_code"] == "TEMPORARY_ERROR"
        assert send.status.status_code is StatusCode.ERROR
        [call] = [c for c in calls if parent_id(c) == ctx(send).span_id]
        assert (call.attributes or {})["http.response.status_code"] == 503
        assert call.status.status_code is StatusCode.ERROR


async def test_a_caller_traceparent_is_continued(spans: InMemorySpanExporter, api: Api, db: asyncpg.Connection) -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with api.client() as client:
        created = await client.post("/v1/messages", json=SMS, headers={"traceparent": caller})
    stored = await db.fetchval("SELECT traceparent FROM outbound_message WHERE id = $1", created.json()["id"])
    [request] = await finished(spans, "POST /v1/messages", 1)
    assert ctx(request).trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert parent_id(request) == 0xB7AD6B7169203331
    assert stored == traceparent_of(request)


async def test_probes_and_scrapes_make_no_spans(spans: InMemorySpanExporter, api: Api) -> None:
    async with api.client() as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/messages/999999")).status_code == 404
    [request] = await finished(spans, "GET /v1/messages/{message_id}", 1)
    assert [s.name for s in spans.get_finished_spans()] == [request.name]


async def test_a_batch_stores_its_request_context_on_every_row(
    spans: InMemorySpanExporter, api: Api, db: asyncpg.Connection
) -> None:
    async with api.client() as client:
        created = await client.post("/v1/messages/batch", json={"messages": [SMS, SMS]})
    assert created.status_code == 201, created.text
    [request] = await finished(spans, "POST /v1/messages/batch", 1)
    rows = await db.fetch("SELECT traceparent FROM outbound_message ORDER BY id")
    assert [row["traceparent"] for row in rows] == [traceparent_of(request)] * 2


async def test_off_by_default_no_context_is_stored(api: Api, db: asyncpg.Connection) -> None:
    assert not tracing.enabled()
    async with api.client() as client:
        created = await client.post("/v1/messages/batch", json={"messages": [SMS, SMS]})
    assert created.status_code == 201, created.text
    assert await db.fetchval("SELECT count(*) FROM outbound_message WHERE traceparent IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM outbound_message") == 2


def test_off_our_code_imports_no_opentelemetry() -> None:
    """Every import statement of outbound_sender that runs while the processes' modules load, and
    while a message is created, claimed and recorded with tracing off, is watched: none names
    opentelemetry. (Installed, the extra is still imported by others on their own: FastAPI imports
    opentelemetry-api for its idle native telemetry, redis-py the SDK's metrics module.)"""
    code = """
import builtins, sys
seen = []
real = builtins.__import__
def watch(name, globals=None, locals=None, fromlist=(), level=0):
    caller = (globals or {}).get("__name__", "")
    if caller.startswith("outbound_sender") and name.startswith("opentelemetry"):
        seen.append((caller, name))
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = watch
import outbound_sender.cli, outbound_sender.app, outbound_sender.api.app, outbound_sender.worker.service
import outbound_sender.webhooks, outbound_sender.providers.transport
from outbound_sender import tracing
from outbound_sender.domain import NewMessage, Channel
from outbound_sender.store.message_api import _row
with tracing.send_span("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", dict) as span:
    span.set("x", 1)
    tracing.call_attributes(provider="p")
    with tracing.client_span("POST", "h", 1):
        pass
tracing.receipt_spans("p", "SMS", [tracing.Receipt(1, None, "SENT")], 0)
assert _row(NewMessage("o", Channel.SMS, "+14155552671"), None, tracing.current_traceparent())[-1] is None
print(seen)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_otlp_export_follows_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """OUTBOUND_TRACING_ENABLED switches it on; OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME are
    the SDK's own: spans arrive at that collector (OTLP/HTTP, protobuf) under that name."""
    bodies: list[bytes] = []
    collector = FastAPI()

    @collector.post("/v1/traces")
    async def traces(request: Request) -> Response:
        bodies.append(await request.body())
        return Response(status_code=200, media_type="application/x-protobuf")

    async with serve(collector) as url:
        monkeypatch.setenv("OUTBOUND_TRACING_ENABLED", "true")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "sender-eu-1")
        assert tracing.setup_tracing("worker", load_settings().tracing)
        try:
            with tracing.send_span(None, lambda: {"outbound.message.id": 7}):
                pass
        finally:
            await asyncio.to_thread(tracing.shutdown_tracing)  # flushes the batch to the collector
    exported = [ExportTraceServiceRequest.FromString(body) for body in bodies]
    names = [
        (attr.value.string_value, span.name)
        for request in exported
        for resource in request.resource_spans
        for attr in resource.resource.attributes
        if attr.key == "service.name"
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert names == [("sender-eu-1", "outbound.send")]


def test_a_collector_that_is_down_delays_the_stop_by_the_bound_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter would retry for OTEL_EXPORTER_OTLP_TIMEOUT (30 s here); stopping waits 1 s."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nobody listens
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    assert tracing.setup_tracing("worker", tracing.TracingSettings(enabled=True))
    with tracing.send_span(None, lambda: {"outbound.message.id": 7}):
        pass
    started = time.monotonic()
    tracing.shutdown_tracing(timeout=1.0)
    assert time.monotonic() - started < 10.0
    assert not tracing.enabled()


def test_on_without_the_packages_the_process_names_the_extra() -> None:
    code = """
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Missing())
from outbound_sender import cli
sys.exit(cli.main(["worker"]))
"""
    env = {**os.environ, "OUTBOUND_TRACING_ENABLED": "true", "OUTBOUND_PROVIDER_KIND": "sandbox"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    assert "pip install 'outbound-messaging[tracing]'" in done.stderr


def test_another_otlp_protocol_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"):
        tracing.setup_tracing("api", tracing.TracingSettings(enabled=True))
    assert not tracing.enabled()
    monkeypatch.setenv("OUTBOUND_TRACING_ENABLED", "true")
    monkeypatch.setenv("OUTBOUND_PROVIDER_KIND", "sandbox")
    assert cli.main(["worker"]) == 2
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'" in capsys.readouterr().err


def test_a_bad_switch_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_TRACING_ENABLED", "sometimes")
    with pytest.raises(ConfigError, match="OUTBOUND_TRACING_ENABLED='sometimes'"):
        load_settings()
