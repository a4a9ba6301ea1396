"""Pure pieces of the API: rate-limit rule, keys, cursors, idempotency hashes, error field paths."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_sender.api.auth import hash_secret, new_key, parse_token
from outbound_sender.api.idempotency import batch_keys, request_hash
from outbound_sender.api.problems import ApiError, field_path
from outbound_sender.api.ratelimit import Decision, LocalRateLimiter, gcra
from outbound_sender.api.routes import decode_cursor, encode_cursor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = LocalRateLimiter(rate=2.0, burst=3, clock=clock)
    assert [(await limiter.hit("a")).allowed for _ in range(4)] == [True, True, True, False]
    denied = await limiter.hit("a")
    assert denied.retry_after == pytest.approx(0.5)
    assert denied.retry_after_header == "1"
    assert (await limiter.hit("b")).allowed  # per key
    clock.now += 0.5
    assert (await limiter.hit("a")).allowed
    assert not (await limiter.hit("a")).allowed


@given(
    st.floats(min_value=0.1, max_value=1000),
    st.integers(min_value=1, max_value=50),
    st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_gcra_never_allows_more_than_burst_plus_rate_times_time(rate: float, burst: int, gaps: list[float]) -> None:
    tat, now, allowed = 0.0, 0.0, 0
    for gap in gaps:
        now += gap
        tat, decision = gcra(tat, now, rate, burst)
        allowed += decision.allowed
        assert decision.allowed or decision.retry_after > 0
    assert allowed <= burst + rate * now + 1e-6


def test_retry_after_header_is_whole_seconds_rounded_up() -> None:
    assert Decision(False, 0.01).retry_after_header == "1"
    assert Decision(False, 2.2).retry_after_header == "3"


def test_keys_round_trip_and_hash() -> None:
    key = new_key()
    assert parse_token(key.token) == key
    assert len(hash_secret(key.secret)) == 64
    assert hash_secret(key.secret) != hash_secret(new_key().secret)


@given(st.text(max_size=80))
def test_garbage_is_not_a_token(text: str) -> None:
    parsed = parse_token(text)
    assert parsed is None or parsed.token == text


@given(st.datetimes(timezones=st.just(dt.UTC)), st.integers(min_value=0, max_value=2**63 - 1))
def test_cursor_round_trip(moment: dt.datetime, message_id: int) -> None:
    assert decode_cursor(encode_cursor(moment, message_id)) == (moment, message_id)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=200))
def test_a_bad_cursor_is_a_422_never_a_crash(text: str) -> None:
    failure: ApiError | None = None
    try:
        decode_cursor(text)
    except ApiError as error:
        failure = error
    if failure is not None:
        assert failure.status == 422
        assert failure.fields[0].field == "cursor"


def test_request_hash_ignores_key_order_but_not_content() -> None:
    a = request_hash("message", {"to": "+1", "body": "x"})
    assert a == request_hash("message", {"body": "x", "to": "+1"})
    assert a != request_hash("message", {"to": "+1", "body": "y"})
    assert a != request_hash("batch", {"to": "+1", "body": "x"})


def test_batch_keys() -> None:
    assert batch_keys("k", 3) == ["k#0", "k#1", "k#2"]
    assert batch_keys(None, 2) == [None, None]


@pytest.mark.parametrize(
    ("loc", "path"),
    [(("messages", 0, "to"), "messages[0].to"), (("to",), "to"), ((), "(request body)"), (("a", "b"), "a.b")],
)
def test_field_paths(loc: tuple[int | str, ...], path: str) -> None:
    assert field_path(loc) == path
