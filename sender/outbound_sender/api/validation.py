"""Pure validation of what a client sends: each check returns a reason a person can act on.

`check_message` applies the per-channel rules that one field's type cannot express and returns every
problem at once (the 422 body names each bad field), plus the normalized recipient.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from outbound_sender.domain import Channel
from outbound_sender.recipients import normalize_recipient

# Body limits per channel, in characters: a concatenated SMS's body at the providers (1600), WhatsApp's
# text.body (4096); e-mail is bounded by what we keep in a queue row, far below the providers' limits.
BODY_LIMITS: Mapping[Channel, int] = {Channel.SMS: 1600, Channel.WHATSAPP: 4096, Channel.EMAIL: 256_000}
BODY_MAX = max(BODY_LIMITS.values())
SUBJECT_MAX = 998  # RFC 5322 line length
WHATSAPP_TEMPLATE = re.compile(r"^[a-z0-9_]{1,512}$")  # Meta: lowercase letters, digits, underscores
TEMPLATE_CODE = r"^[A-Za-z0-9_.-]{1,512}$"
LANGUAGE = r"^[a-z]{2,3}(_[A-Z]{2})?$"  # Meta's template languages: en, en_US, pt_BR, fil, ...
SEND_AT_HORIZON = dt.timedelta(days=366)
PARAM_LIST_MAX = 100  # positional template parameters in one list
WHATSAPP_POSITIONAL = ("header", "body")  # the template components whose parameters a list fills
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# C0 and C1 controls (U+0085 NEXT LINE among them), DEL, the Unicode line and paragraph separators
# (U+2028, U+2029) and unpaired surrogates: each would break a one-line value such as a mail header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    reason: str


class MessageFields(Protocol):
    """The fields of a message request that the channel rules look at."""

    @property
    def channel(self) -> Channel: ...
    @property
    def to(self) -> str: ...
    @property
    def body(self) -> str | None: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def template_code(self) -> str | None: ...
    @property
    def template_language(self) -> str | None: ...
    @property
    def template_params(self) -> Mapping[str, str | list[str]]: ...
    @property
    def send_at(self) -> dt.datetime | None: ...


def storable_text(value: str) -> str:
    """Text PostgreSQL can store: no NUL character, no unpaired surrogate."""
    if _UNSTORABLE.search(value):
        raise ValueError("must not contain NUL characters or unpaired surrogates")
    return value


def single_line(value: str) -> str:
    """One line of printable text (identifiers, subjects: no header injection)."""
    if _CONTROL.search(value):
        raise ValueError("must be one line without control characters")
    return value


def check_message(message: MessageFields, now: dt.datetime, prefix: str = "") -> tuple[str | None, list[Problem]]:
    """Apply the channel's rules; return the normalized recipient (None if invalid) and every problem."""
    problems = [Problem(prefix + name, reason) for name, reason in _rules(message, now)]
    try:
        to: str | None = normalize_recipient(message.channel, message.to)
    except ValueError as error:
        to = None
        problems.insert(0, Problem(prefix + "to", str(error)))
    return to, problems


def _rules(m: MessageFields, now: dt.datetime) -> list[tuple[str, str]]:
    rules = {Channel.SMS: _sms_rules, Channel.EMAIL: _email_rules, Channel.WHATSAPP: _whatsapp_rules}
    found = rules[m.channel](m)
    limit = BODY_LIMITS[m.channel]
    if m.body is not None and len(m.body) > limit:
        found.append(("body", f"is {len(m.body)} characters; {m.channel.value} allows at most {limit}"))
    if m.template_params and m.template_code is None:
        found.append(("template_params", "needs template_code"))
    if m.send_at is not None and m.send_at > now + SEND_AT_HORIZON:
        found.append(("send_at", "must be within 366 days from now"))
    return found


def _sms_rules(m: MessageFields) -> list[tuple[str, str]]:
    found = [] if m.body else [("body", "is required for SMS")]
    for name in ("subject", "template_code", "template_language"):
        if getattr(m, name) is not None:
            found.append((name, "is not used by SMS (send the text in body)"))
    return found


def _email_rules(m: MessageFields) -> list[tuple[str, str]]:
    if m.template_code is not None:
        found = [("body", "must be empty when template_code is given")] if m.body is not None else []
    else:
        found = [
            (name, "is required for EMAIL without template_code")
            for name in ("subject", "body")
            if not getattr(m, name)
        ]
    if m.template_language is not None:
        found.append(("template_language", "is used by WhatsApp templates only"))
    return found


def _whatsapp_rules(m: MessageFields) -> list[tuple[str, str]]:
    found = [("subject", "is not used by WHATSAPP")] if m.subject is not None else []
    if m.template_code is None:
        if not m.body:
            found.append(("body", "is required for WHATSAPP without template_code"))
        if m.template_language is not None:
            found.append(("template_language", "needs template_code"))
        return found
    if m.body is not None:
        found.append(("body", "must be empty when template_code is given (a template has its own text)"))
    if not WHATSAPP_TEMPLATE.match(m.template_code):
        found.append(("template_code", "must be a WhatsApp template name: lowercase letters, digits and _"))
    if m.template_language is None:
        found.append(("template_language", "is required with a WhatsApp template (for example en_US)"))
    found += [
        (f"template_params.{name}", "a list (positional parameters) is taken only for header and body")
        for name, value in m.template_params.items()
        if isinstance(value, list) and name not in WHATSAPP_POSITIONAL
    ]
    return found
