"""What the worker says about each call and each recorded result: metrics, log lines, span fields."""

from __future__ import annotations

import logging
import time

from outbound_sender import tracing
from outbound_sender.domain import CallResult, OutboundMessage, Status
from outbound_sender.logs import mask, message_fields
from outbound_sender.metrics import Metrics
from outbound_sender.store.gateway import Completion

log = logging.getLogger("OutboundJobWorker")


def span_attributes(message: OutboundMessage) -> dict[str, str | int]:
    """The send span's attributes: the message by id, never its recipient (docs/tracing.md)."""
    attributes: dict[str, str | int] = {
        "outbound.message.id": message.id,
        "outbound.channel": message.channel.value,
        "outbound.org_id": message.org_id,
        "outbound.attempt": message.attempt_no,
    }
    if message.correlation_id:
        attributes["outbound.correlation_id"] = mask(message.correlation_id)  # the client's text
    return attributes


def trace_outcome(span: tracing.SpanHandle, r: CallResult) -> None:
    span.set("outbound.outcome", "RELEASED" if r.release else r.outcome.value)
    span.set("outbound.error_code", r.error_code)
    span.set("http.response.status_code", r.http_status)
    if r.error_code is not None and not r.release:
        span.failed(r.error_code)


def observe_call(metrics: Metrics, r: CallResult) -> None:
    channel = r.message.channel.value
    if r.release:  # no provider call was made: a deferral, not a failed send
        metrics.deferred.labels(channel, r.error_code or "UNKNOWN").inc()
        return
    provider = r.provider or "none"
    metrics.child(metrics.provider_duration, provider, channel, r.outcome.value).observe(r.duration_ms / 1000)
    if r.ambiguous:
        metrics.ambiguous.labels(channel, provider).inc()
    if r.error_code is None:
        metrics.child(metrics.send_success, channel, provider).inc()
        _log_sent(r, provider)
        return
    metrics.send_failure.labels(channel, provider, r.error_code).inc()
    final = r.retry_delay_ms is None or r.message.attempt_count >= r.message.max_attempts
    fields = message_fields(
        r.message.id,
        r.message.correlation_id,
        errorCode=r.error_code,
        provider=provider,
        channel=channel,
        attempt=f"{r.message.attempt_count}/{r.message.max_attempts}",
        retryInMs=r.retry_delay_ms,
        providerCode=r.provider_code,
    )
    log.log(logging.ERROR if final else logging.WARNING, f"handleFailure: {r.error_message}", extra={"fields": fields})


def _log_sent(r: CallResult, provider: str) -> None:
    """One line per accepted message: `grep messageId=<id>` finds its correlation id and provider."""
    fields = message_fields(
        r.message.id,
        r.message.correlation_id,
        provider=provider,
        channel=r.message.channel.value,
        providerMessageId=r.provider_message_id,
        durationMs=r.duration_ms,
    )
    log.info("OutboundJobWorker sent", extra={"fields": fields})


def observe_completion(metrics: Metrics, row: Completion) -> float | None:
    """Count one recorded result; returns when (monotonic) a retry it scheduled is due, if any."""
    channel = row.channel
    if not row.applied:
        metrics.superseded.labels(channel, row.outcome).inc()
        return None
    if row.status == Status.SENT:
        metrics.child(metrics.latency, channel).observe(max(row.latency_seconds or 0.0, 0.0))
    elif row.status == Status.FAILED:
        metrics.dead_lettered.labels(channel, row.error_code or "UNKNOWN").inc()
    elif row.outcome == "RETRY":
        metrics.retries.labels(channel, row.error_code or "UNKNOWN").inc()
    if row.status == Status.QUEUED and row.retry_in_seconds is not None:
        return time.monotonic() + max(row.retry_in_seconds, 0.0) + 0.01
    return None
