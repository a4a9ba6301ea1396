"""From provider outcome to the recorded result: pure decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage, Outcome
from outbound_sender.errors import AmbiguousSendError, PermanentError, RateLimitedError, TemporaryError
from outbound_sender.providers.base import SendResult
from outbound_sender.store.gateway import as_arrays
from outbound_sender.worker import results
from outbound_sender.worker.retry import RetryPolicy

POLICY = RetryPolicy(base_seconds=2, max_seconds=600)


def message(attempt: int = 1, max_attempts: int = 5) -> OutboundMessage:
    return OutboundMessage(
        id=7,
        org_id="o",
        channel=Channel.SMS,
        to_recipient="+15551230000",
        lease_id="00000000-0000-0000-0000-000000000001",
        attempt_no=attempt,
        attempt_count=attempt,
        max_attempts=max_attempts,
    )


def test_success_keeps_the_provider_message_id() -> None:
    result = results.success(message(), "twilio", SendResult("SM123", 201), 40)
    assert (result.outcome, result.provider_message_id, result.http_status) == (Outcome.SENT, "SM123", 201)
    assert result.error_code is None


def test_a_permanent_error_fails_without_a_retry_time() -> None:
    error = PermanentError(ErrorCode.INVALID_PHONE_NUMBER, "bad", provider_code="21211", http_status=400)
    result = results.failure(message(), "twilio", error, 10, POLICY)
    assert (result.outcome, result.retry_delay_ms, result.provider_code) == (Outcome.FAILED, None, "21211")


@given(st.integers(1, 30), st.floats(0, 10_000))
def test_a_temporary_error_retries_no_sooner_than_the_hint(attempt: int, hint: float) -> None:
    error = RateLimitedError(ErrorCode.RATE_LIMIT_EXCEEDED, "429", retry_after=hint)
    result = results.failure(message(attempt), "p", error, 10, POLICY)
    assert result.outcome is Outcome.RETRY
    assert result.retry_delay_ms is not None
    assert result.retry_delay_ms >= int(min(hint, POLICY.max_hint_seconds) * 1000) - 1


def test_an_ambiguous_send_is_flagged_and_retried() -> None:
    result = results.failure(message(), "p", AmbiguousSendError(ErrorCode.TEMPORARY_ERROR, "timeout"), 10, POLICY)
    assert (result.outcome, result.ambiguous) == (Outcome.RETRY, True)


def test_a_deferral_does_not_burn_an_attempt() -> None:
    result = results.deferred(message(), 30.0, ErrorCode.QUOTA_EXCEEDED, "quota 5/5 used")
    assert (result.outcome, result.retry_delay_ms, result.error_code) == (Outcome.DEFER, 30_000, "QUOTA_EXCEEDED")


def test_long_provider_messages_are_truncated() -> None:
    result = results.failure(message(), "p", TemporaryError(ErrorCode.TEMPORARY_ERROR, "x" * 10_000), 1, POLICY)
    assert result.error_message is not None
    assert len(result.error_message) == 2000


def test_arrays_follow_the_statement_parameter_order() -> None:
    ok = results.success(message(), "p", SendResult("id-1", 201), 5)
    columns = as_arrays([ok, ok])
    assert len(columns) == 15
    assert all(len(column) == 2 for column in columns)
    assert columns[0] == [7, 7]
    assert columns[3] == ["SENT", "SENT"]
    assert columns[14] == ["SMS", "SMS"]


@pytest.mark.parametrize("error_type", [PermanentError, TemporaryError, RateLimitedError, AmbiguousSendError])
def test_every_error_carries_a_normalized_code(error_type: type[PermanentError]) -> None:
    error = error_type(ErrorCode.TEMPORARY_ERROR, "m", provider_code="x")
    assert error.code is ErrorCode.TEMPORARY_ERROR
    assert "provider_code='x'" in repr(error)
