"""Recipient addresses: the one rule the HTTP API and the `outbound` command both apply.

SMS and WhatsApp take an E.164 number that phonenumbers knows to be valid; e-mail takes an address
valid per email-validator (no DNS look-up). Each function returns the normalized form, or raises
ValueError with a reason a person can act on.
"""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from outbound_sender.domain import Channel

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")


def normalize_phone(text: str) -> str:
    """An E.164 number that phonenumbers knows to be valid, or ValueError saying why not."""
    if not E164.match(text):
        raise ValueError("must be an E.164 phone number: '+', country code and number, digits only (+14155552671)")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as error:
        raise ValueError(f"is not a phone number: {error._msg}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"is not a valid phone number for country code +{number.country_code}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(text: str) -> str:
    """A syntactically valid e-mail address (no DNS look-up), normalized, or ValueError saying why not."""
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ValueError(f"is not a valid e-mail address: {error}") from None


def normalize_recipient(channel: Channel, to: str) -> str:
    return normalize_email(to) if channel is Channel.EMAIL else normalize_phone(to)
