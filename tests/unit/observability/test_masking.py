"""Masking of recipients in log text: properties over generated numbers, addresses and text."""

from __future__ import annotations

import string
from typing import Literal

from hypothesis import example, given
from hypothesis import strategies as st

from outbound_sender.logs import mask, mask_value

LOCAL_CHARS = string.ascii_letters + string.digits + "_%+-"
DOMAIN_CHARS = string.ascii_lowercase + string.digits


@st.composite
def e164(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from("123456789"))
    rest = draw(st.text(string.digits, min_size=7, max_size=14))
    return "+" + first + rest


@st.composite
def emails(draw: st.DrawFn) -> str:
    middle = draw(st.text(LOCAL_CHARS + ".", max_size=18).filter(lambda s: ".." not in s))
    local = draw(st.sampled_from(LOCAL_CHARS)) + middle
    if local.endswith("."):
        local += "x"
    labels = draw(st.lists(st.text(DOMAIN_CHARS, min_size=1, max_size=12), min_size=1, max_size=3))
    tld = draw(st.text(string.ascii_lowercase, min_size=2, max_size=6))
    return f"{local}@{'.'.join([*labels, tld])}"


any_text = st.text(max_size=40)
NO_DIGITS: tuple[Literal["Nd"]] = ("Nd",)


@given(number=e164(), before=any_text, after=any_text)
@example(number="+15551234567", before="to=", after="89")
@example(number="+15551234567", before="12", after=".")
def test_any_e164_number_in_any_text_is_masked(number: str, before: str, after: str) -> None:
    masked = mask(before + number + after)
    assert number not in masked
    assert number[1:] not in masked


@given(address=emails(), before=any_text, after=any_text)
@example(address="alice.smith@example.com", before="'", after="'")
def test_any_email_in_any_text_is_masked(address: str, before: str, after: str) -> None:
    assert address not in mask(before + address + after)


@given(text=st.text(max_size=80) | st.builds(lambda a, b, c: a + b + c, any_text, e164(), emails()))
def test_masking_is_idempotent(text: str) -> None:
    once = mask(text)
    assert mask(once) == once


@given(text=st.text(alphabet=st.characters(blacklist_categories=NO_DIGITS, blacklist_characters="@"), max_size=80))
def test_text_without_digits_or_at_sign_is_unchanged(text: str) -> None:
    assert mask(text) == text


@given(number=st.integers(min_value=0, max_value=999_999))
def test_short_numbers_in_text_are_unchanged(number: int) -> None:
    text = f"retry in {number} ms after {number} attempts"
    assert mask(text) == text


def test_masked_forms_keep_what_debugging_needs() -> None:
    assert mask("to +15551234567") == "to +*******4567"
    assert mask("alice@example.com") == "a***@example.com"
    assert mask("call +1 (555) 123-4567 now") == "call +*******4567 now"
    assert mask("wa_id 15551234567.") == "wa_id *******4567."
    assert mask("(555) 123-4567 or 555.123.4567") == "******4567 or ******4567"


def test_operational_text_is_not_mistaken_for_recipients() -> None:
    samples = [
        "ts=2026-11-28T12:00:00.123Z",
        "next retry at 2026-11-28 12:00:00+00:00",
        "messageId=123456789",
        "http://127.0.0.1:8090/v1/messages",
        "lease 3f2b8a1e-1234-5678-9abc-def012345678",
        "latency 0.1234567890 s",
        "OutboundJobWorker Processing 10 pending outbound messages",
        "provider_message_id=SM0123456789abcdef0123456789abcdef",
    ]
    for sample in samples:
        assert mask(sample) == sample


def test_numbers_passed_as_numbers_are_not_masked() -> None:
    assert mask_value(12345678901) == 12345678901
    assert mask_value(1.5) == 1.5
    assert mask_value(None) is None
    assert mask_value("+15551234567") == "+*******4567"
    assert mask_value(["alice@example.com"]) == "['a***@example.com']"
