"""From a provider call to the CallResult that records it: pure, so the decisions are unit-tested."""

from __future__ import annotations

from outbound_sender.domain import CallResult, ErrorCode, OutboundMessage, Outcome
from outbound_sender.errors import AmbiguousSendError, ProviderError
from outbound_sender.providers.base import SendResult
from outbound_sender.worker.retry import RetryPolicy


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
