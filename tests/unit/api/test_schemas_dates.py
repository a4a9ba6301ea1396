"""Timestamps at the API boundary (found by schemathesis: year 1 came back without its zone)."""

from __future__ import annotations

import pydantic
import pytest

from outbound_sender.api.schemas import ListQuery, MessageIn


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])
def test_send_at_before_2000_is_refused_with_a_readable_reason(when: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="on or after 2000-01-01T00:00:00Z and before 9000"):
        MessageIn.model_validate({"channel": "SMS", "to": "+14155552671", "body": "x", "send_at": when})


def test_a_normal_send_at_is_kept() -> None:
    message = MessageIn.model_validate(
        {"channel": "SMS", "to": "+14155552671", "body": "x", "send_at": "2030-01-01T09:30:00+02:00"}
    )
    assert message.send_at is not None
    assert message.send_at.utcoffset() is not None


@pytest.mark.parametrize(
    "when",
    ["9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59Z", "9000-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59"],
)
@pytest.mark.parametrize("name", ["created_after", "created_before"])
def test_list_filters_are_bounded_like_send_at(name: str, when: str) -> None:
    """9999-12-31T23:59:59-23:59 is past year 9999 in UTC: it answered 500 before the bound."""
    with pytest.raises(pydantic.ValidationError, match="before 9000-01-01"):
        ListQuery.model_validate({name: when})


def test_the_last_accepted_instant_is_just_before_the_bound() -> None:
    query = ListQuery.model_validate({"created_after": "8999-12-31T23:59:59.999999Z"})
    assert query.created_after is not None
