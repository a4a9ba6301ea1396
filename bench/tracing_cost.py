"""What tracing costs one send, off and on (docs/tracing.md): the worker's hooks around one provider
call, measured in process (no database, no network).

    .venv/bin/python -m bench.tracing_cost

Off: the hooks as the worker and the transport run them with OUTBOUND_TRACING_ENABLED unset. On:
the send span and the HTTP span beneath it, ended and handed to an exporter that drops them (the
export itself, batched in a background thread in production, is not counted).
"""

from __future__ import annotations

import timeit
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from outbound_sender import tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CALLS = 20_000


class Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def attributes() -> dict[str, str | int]:
    return {"outbound.message.id": 1, "outbound.channel": "SMS", "outbound.org_id": "acme", "outbound.attempt": 1}


def one_send() -> None:
    with tracing.send_span(TRACEPARENT, attributes) as span:
        span.set("outbound.provider", "twilio")
        tracing.call_attributes(**{"outbound.provider": "twilio"})
        if tracing.enabled():
            with tracing.client_span("POST", "api.twilio.com", 443) as call:
                call.set("http.response.status_code", 201)
        span.set("outbound.outcome", "SENT")


def per_call() -> float:
    return min(timeit.repeat(one_send, number=CALLS, repeat=5)) / CALLS


def main() -> None:
    off = per_call()
    tracing.setup_tracing("bench", tracing.TracingSettings(enabled=True), exporter=Dropping())
    try:
        on = per_call()
    finally:
        tracing.shutdown_tracing()
    print(f"per send: tracing off {off * 1e6:.2f} us, on {on * 1e6:.1f} us (send span + HTTP span)")


if __name__ == "__main__":
    main()
