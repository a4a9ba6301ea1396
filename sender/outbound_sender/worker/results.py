"""From a provider call to the row that records it: pure, so the decisions are unit-tested."""

from __future__ import annotations

from dataclasses import dataclass

from outbound_sender.domain import ErrorCode, OutboundMessage, Outcome
from outbound_sender.errors import AmbiguousSendError, ProviderError
from outbound_sender.providers.base import SendResult
from outbound_sender.worker.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class CallResult:
    """One provider call's outcome, ready for the complete_batch statement."""

    message: OutboundMessage
    outcome: Outcome
    provider: str | None
    duration_ms: int
    error_code: str | None = None
    error_message: str | None = None
    provider_code: str | None = None
    provider_message: str | None = None
    provider_message_id: str | None = None
    http_status: int | None = None
    retry_delay_ms: int | None = None
    ambiguous: bool = False
    release: bool = False  # hand the message back unsent: no attempt burnt, no attempt row


def success(message: OutboundMessage, provider: str, result: SendResult, duration_ms: int) -> CallResult:
    return CallResult(
        message,
        Outcome.SENT,
        provider,
        duration_ms,
        provider_message_id=result.provider_message_id,
        http_status=result.http_status,
    )


def failure(
    message: OutboundMessage,
    provider: str | None,
    error: ProviderError,
    duration_ms: int,
    policy: RetryPolicy,
    *,
    defer: bool = False,
) -> CallResult:
    """Permanent errors fail now; temporary ones retry after backoff (or defer, not burning an attempt)."""
    outcome = Outcome.DEFER if defer else (Outcome.RETRY if error.retryable else Outcome.FAILED)
    delay = None
    if outcome is not Outcome.FAILED:
        delay = int(policy.delay(message.attempt_count, hint=error.retry_after) * 1000)
    return CallResult(
        message,
        outcome,
        provider,
        duration_ms,
        error_code=error.code.value,
        error_message=error.message[:2000],
        provider_code=error.provider_code,
        provider_message=error.message[:2000],
        http_status=error.http_status,
        retry_delay_ms=delay,
        ambiguous=isinstance(error, AmbiguousSendError),
    )


def deferred(message: OutboundMessage, seconds: float, code: ErrorCode, reason: str) -> CallResult:
    """Not sent, by our own decision (quota, throttle): wait without burning an attempt."""
    return CallResult(
        message,
        Outcome.DEFER,
        None,
        0,
        error_code=code.value,
        error_message=reason,
        retry_delay_ms=int(seconds * 1000),
    )


def released(message: OutboundMessage, reason: str) -> CallResult:
    """Not sent because of this worker's own state (every circuit of the channel open here): the
    message goes back to the queue at once for a worker that can send it; not an attempt."""
    return CallResult(
        message, Outcome.DEFER, None, 0, error_code=ErrorCode.NO_PROVIDER.value, error_message=reason, release=True
    )


def interrupted(message: OutboundMessage, provider: str | None, duration_ms: int) -> CallResult:
    """A send cut short by shutdown: we cannot know whether the provider got it, so retry soon."""
    return CallResult(
        message,
        Outcome.RETRY,
        provider,
        duration_ms,
        error_code=ErrorCode.TEMPORARY_ERROR.value,
        error_message="send interrupted by worker shutdown",
        retry_delay_ms=0,
        ambiguous=True,
    )


def as_arrays(results: list[CallResult]) -> list[list[object]]:
    """Column arrays for the complete_batch statement, in its parameter order ($1..$15)."""
    columns: list[list[object]] = [[] for _ in range(15)]
    for r in results:
        row = (
            r.message.id,
            r.message.lease_id,
            r.message.attempt_no,
            r.outcome.value,
            r.error_code,
            r.error_message,
            r.provider,
            r.provider_code,
            r.provider_message,
            r.provider_message_id,
            r.http_status,
            r.duration_ms,
            r.retry_delay_ms,
            r.ambiguous,
            r.message.channel.value,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns
