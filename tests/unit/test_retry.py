from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_sender.worker.retry import RetryPolicy

policies = st.builds(
    RetryPolicy,
    base_seconds=st.floats(0.001, 60),
    max_seconds=st.floats(60, 86_400),
    max_hint_seconds=st.floats(1, 86_400),
)
attempts = st.integers(1, 200)
draws = st.floats(0, 1, exclude_max=True)


@given(policies, attempts, draws)
def test_delay_is_between_half_and_all_of_the_capped_nominal(policy: RetryPolicy, attempt: int, draw: float) -> None:
    nominal = min(policy.max_seconds, policy.base_seconds * 2 ** (attempt - 1))
    delay = policy.delay(attempt, draw=draw)
    assert nominal / 2 <= delay <= nominal
    assert delay <= policy.max_seconds


@given(policies, st.integers(1, 30))
def test_nominal_delay_doubles_until_the_cap(policy: RetryPolicy, attempt: int) -> None:
    assert policy.nominal(attempt + 1) == min(policy.max_seconds, 2 * policy.nominal(attempt))


@given(policies, attempts, draws, st.floats(0.001, 200_000))
def test_provider_hint_is_a_floor_capped_by_max_hint(
    policy: RetryPolicy, attempt: int, draw: float, hint: float
) -> None:
    delay = policy.delay(attempt, hint=hint, draw=draw)
    assert delay >= min(hint, policy.max_hint_seconds)
    assert delay >= policy.delay(attempt, draw=draw)


def test_jitter_spreads_retries_of_messages_that_failed_together() -> None:
    policy = RetryPolicy(base_seconds=2, max_seconds=3600)
    delays = {round(policy.delay(5), 3) for _ in range(200)}
    assert len(delays) > 150
    assert min(delays) >= 16
    assert max(delays) <= 32


@pytest.mark.parametrize(("attempt", "expected"), [(1, 2.0), (2, 4.0), (3, 8.0), (20, 3600.0)])
def test_nominal_known_values(attempt: int, expected: float) -> None:
    assert RetryPolicy(base_seconds=2, max_seconds=3600).nominal(attempt) == expected
