"""The validators: properties over generated input (hypothesis) and the channel rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_sender import recipients
from outbound_sender.api import validation as v
from outbound_sender.domain import Channel

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def _example(region: str) -> str | None:
    number = phonenumbers.example_number(region)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if number else None


EXAMPLES = [n for n in (_example(r) for r in REGIONS) if n]


@given(st.sampled_from(EXAMPLES))
def test_valid_numbers_of_every_region_pass_unchanged(number: str) -> None:
    assert recipients.normalize_phone(number) == number


def _outcome(check: Callable[[str], str], text: str) -> tuple[str | None, str | None]:
    """(result, None) or (None, the reason)."""
    try:
        return check(text), None
    except ValueError as error:
        return None, str(error)


@given(st.text(max_size=30))
def test_phone_check_either_normalizes_to_e164_or_says_why(text: str) -> None:
    result, reason = _outcome(recipients.normalize_phone, text)
    if result is None:
        assert reason  # a reason a person can read
    else:
        assert recipients.E164.match(result)
        assert recipients.normalize_phone(result) == result


def _phonenumbers_valid(text: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(text, None)))
    except phonenumbers.NumberParseException:
        return False


@given(st.from_regex(r"\A\+[1-9][0-9]{1,14}\Z"))
def test_e164_shaped_input_is_accepted_exactly_when_phonenumbers_says_valid(text: str) -> None:
    valid = _phonenumbers_valid(text)
    try:
        recipients.normalize_phone(text)
    except ValueError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize("text", ["14155552671", "+1 415 555 2671", "+1-415-555-2671", "(415) 555-2671", "+0123", ""])
def test_non_e164_formats_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        recipients.normalize_phone(text)


@given(st.emails())
def test_generated_addresses_normalize_idempotently_or_say_why(address: str) -> None:
    result, reason = _outcome(recipients.normalize_email, address)
    if result is None:
        assert "not a valid e-mail address" in str(reason)
    else:
        assert recipients.normalize_email(result) == result


@pytest.mark.parametrize("address", ["plain", "a@", "@b.com", "a@b", "a b@c.com", "a@@b.com"])
def test_bad_addresses_are_rejected(address: str) -> None:
    with pytest.raises(ValueError, match="not a valid e-mail address"):
        recipients.normalize_email(address)


def test_addresses_are_normalized() -> None:
    assert recipients.normalize_email("Ada@EXAMPLE.com") == "Ada@example.com"


@given(st.text())
def test_storable_text_rejects_exactly_nul_and_lone_surrogates(text: str) -> None:
    unstorable = "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    try:
        v.storable_text(text)
    except ValueError:
        assert unstorable
    else:
        assert not unstorable
        text.encode("utf-8")  # what PostgreSQL will store


@given(st.text())
def test_single_line_rejects_control_characters(text: str) -> None:
    breaking = {0x85, 0x2028, 0x2029}  # NEXT LINE, LINE SEPARATOR, PARAGRAPH SEPARATOR: line breaks too
    bad = any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or ord(c) in breaking or 0xD800 <= ord(c) <= 0xDFFF for c in text)
    try:
        v.single_line(text)
    except ValueError:
        assert bad
    else:
        assert not bad


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_subject_with_a_unicode_line_break_is_refused(separator: str) -> None:
    with pytest.raises(ValueError, match="one line"):
        v.single_line(f"Hello{separator}Bcc: victim@example.com")


@dataclass
class Msg:
    channel: Channel
    to: str
    body: str | None = None
    subject: str | None = None
    template_code: str | None = None
    template_language: str | None = None
    template_params: dict[str, str] = field(default_factory=dict)
    send_at: dt.datetime | None = None


def problems(message: Msg) -> dict[str, str]:
    _, found = v.check_message(message, NOW)
    return {p.field: p.reason for p in found}


SMS = Msg(Channel.SMS, "+14155552671", body="hi")
EMAIL = Msg(Channel.EMAIL, "ada@example.com", subject="Hi", body="Hello")
WA_TEXT = Msg(Channel.WHATSAPP, "+33612345678", body="Bonjour")
WA_TEMPLATE = Msg(Channel.WHATSAPP, "+33612345678", template_code="otp_code", template_language="fr")


@pytest.mark.parametrize(
    "message", [SMS, EMAIL, WA_TEXT, WA_TEMPLATE, Msg(Channel.EMAIL, "a@example.com", template_code="welcome.v2")]
)
def test_valid_messages_have_no_problems(message: Msg) -> None:
    assert problems(message) == {}


PHONE, FR = "+14155552671", "+33612345678"
RULES = [
    (Msg(Channel.SMS, PHONE), "body", "is required for SMS"),
    (Msg(Channel.SMS, PHONE, body="x" * 1601), "body", "is 1601 characters; SMS allows at most 1600"),
    (Msg(Channel.SMS, PHONE, body="x", subject="s"), "subject", "is not used by SMS (send the text in body)"),
    (Msg(Channel.WHATSAPP, FR, body="x" * 4097), "body", "is 4097 characters; WHATSAPP allows at most 4096"),
    (Msg(Channel.WHATSAPP, FR, template_code="otp"), "template_language", "is required with a WhatsApp template"),
    (Msg(Channel.WHATSAPP, FR, template_code="OTP", template_language="fr"), "template_code", "WhatsApp template name"),
    (Msg(Channel.EMAIL, "a@example.com", body="x"), "subject", "is required for EMAIL without template_code"),
    (
        Msg(Channel.EMAIL, "a@example.com", subject="s", body="x", template_params={"a": "b"}),
        "template_params",
        "needs",
    ),
    (Msg(Channel.SMS, PHONE, body="x", send_at=NOW + dt.timedelta(days=367)), "send_at", "within 366 days"),
]


@pytest.mark.parametrize(("message", "name", "reason"), RULES)
def test_channel_rules_name_the_field_and_the_reason(message: Msg, name: str, reason: str) -> None:
    found = problems(message)
    assert list(found) == [name]
    assert reason in found[name]


def test_every_problem_is_reported_at_once_with_the_prefix() -> None:
    message = Msg(Channel.SMS, "12", subject="s", template_code="t")
    _, found = v.check_message(message, NOW, prefix="messages[3].")
    assert [p.field for p in found] == [
        "messages[3].to",
        "messages[3].body",
        "messages[3].subject",
        "messages[3].template_code",
    ]


@given(st.sampled_from(list(Channel)), st.integers(min_value=0, max_value=300_000))
def test_body_limit_is_exact_per_channel(channel: Channel, length: int) -> None:
    message = {Channel.SMS: SMS, Channel.EMAIL: EMAIL, Channel.WHATSAPP: WA_TEXT}[channel]
    body_problem = problems(Msg(channel, message.to, body="x" * length or None, subject=message.subject)).get(
        "body", ""
    )
    assert ("allows at most" in body_problem) == (length > v.BODY_LIMITS[channel])
