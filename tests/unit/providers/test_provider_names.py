"""A provider lives in its own modules: no other source file of the sender or the operator names it.

A provider's own modules are those named after it, one per layer: providers/<name>.py (client,
settings, error table, probe), webhooks/<name>.py (receipts: handler, signature, parsing) and
sandboxes/<name>.py (its fake API and sandbox account). providers/registry.py holds one entry per
provider, and the database's `kind` constraint (migrations, schema.sql) lists them all, which
test_registry.py holds to the registry. Every other module reaches a provider only through its
registry entry, so adding one touches its own modules, one registry entry, its tests and its docs.

A name counts in any spelling an identifier, a string or prose gives it: `vonage`, `Vonage`,
`VonageSettings`, `VONAGE_API_KEY`, `ses_webhook`, `SesSandbox`, `SES_REGION`, not `sessions`.
`whatsapp` is also a channel (domain.Channel.WHATSAPP, with quotas of its own), and the generic
`sandbox` is also a value of OUTBOUND_PROVIDER_KIND: neither can be told apart in text, so the scan
skips them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from outbound_sender.domain import Channel
from outbound_sender.providers import registry

ROOT = Path(__file__).resolve().parents[3]
SOURCES = ("sender/outbound_sender", "operator/outbound_operator")
SUFFIXES = (".py", ".sql")
SHARED = (  # every provider is named here, by design
    "sender/outbound_sender/providers/registry.py",
    "sender/outbound_sender/store/schema.sql",  # the `kind` constraint: test_registry.py checks it
    "sender/outbound_sender/store/migrations/",  # the constraint's history
)
# A provider's own module may name another where it says how they relate (prose only).
CROSS = {
    ("sender/outbound_sender/providers/ses.py", "sendgrid"): "failover order after it; an error like its 403",
    ("sender/outbound_sender/providers/vonage.py", "twilio"): "failover order after it",
    ("sender/outbound_sender/sandboxes/vonage.py", "twilio"): "the same test numbers as its sandbox",
    # SendGrid, a Twilio company, signs with X-Twilio-Email-Event-Webhook-Signature.
    ("sender/outbound_sender/webhooks/sendgrid.py", "twilio"): "its signature headers' names",
    ("sender/outbound_sender/sandboxes/sendgrid.py", "twilio"): "its signature headers' names",
}
# Generic modules that still name a provider, with the reason; each line goes when its mention
# does (test_the_allow_lists_hold_only_what_is_still_there), and none may be added for a new one.
NOT_YET_MOVED: dict[tuple[str, str], str] = {}


def checked_names() -> tuple[str, ...]:
    channels = {c.value.lower() for c in Channel}
    return tuple(n for n in registry.names() if n not in channels and n != registry.GENERIC)


def camel(name: str) -> str:
    """How the provider's code spells it in CamelCase: its settings model's name (SendGridSettings)."""
    entry = registry.REGISTRY.get(name)
    model = entry.settings.__name__ if entry is not None and entry.settings is not None else ""
    return model.removesuffix("Settings") if model.lower() == f"{name}settings" else name.capitalize()


def mention(name: str) -> re.Pattern[str]:
    """`name` as a word of an identifier or of prose: lower (vonage, ses_webhook), capitalized or
    CamelCase (Vonage, SendGrid, SesSandbox, the second word of camelCase) or upper case
    (SES_REGION); not inside a longer word (sessions, uses, SESSION)."""
    lower, upper = name.lower(), name.upper()
    titles = "|".join(sorted({re.escape(name.capitalize()), re.escape(camel(name))}))
    return re.compile(
        rf"(?<![A-Za-z0-9]){lower}(?![a-z])|(?<![A-Z])(?:{titles})(?![a-z])|(?<![A-Za-z0-9]){upper}(?![A-Za-z])"
    )


def mentions(text: str, name: str) -> Iterator[int]:
    """The line numbers of `text` that name `name`."""
    pattern = mention(name)
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.search(line):
            yield number


def allowed(path: str, name: str) -> bool:
    own = Path(path).stem == name
    return own or path.startswith(SHARED) or (path, name) in CROSS or (path, name) in NOT_YET_MOVED


def leaks(root: Path = ROOT) -> list[str]:
    """`path:line: name` for each mention of a provider outside its own modules."""
    found: list[str] = []
    for source in SOURCES:
        for file in sorted((root / source).rglob("*")):
            if file.suffix not in SUFFIXES or "__pycache__" in file.parts:
                continue
            path = file.relative_to(root).as_posix()
            text = file.read_text()
            for name in checked_names():
                if not allowed(path, name):
                    found.extend(f"{path}:{line}: {name}" for line in mentions(text, name))
    return found


def test_no_module_but_a_providers_own_names_it() -> None:
    found = leaks()
    assert not found, (
        "a provider named outside its own modules (providers|webhooks|sandboxes/<name>.py) and the "
        "registry: reach it through its registry entry instead\n" + "\n".join(found)
    )


def test_the_allow_lists_hold_only_what_is_still_there() -> None:
    """An entry whose mention went away must go too, so the lists only shrink."""
    stale = [
        f"{path}: {name}"
        for path, name in [*CROSS, *NOT_YET_MOVED]
        if not any(mentions((ROOT / path).read_text(), name))
    ]
    assert not stale, "remove from the allow-lists:\n" + "\n".join(stale)


def test_the_providers_added_last_are_in_no_allow_list() -> None:
    later = {"vonage", "ses"}
    assert not [entry for entry in NOT_YET_MOVED if entry[1] in later]


@pytest.mark.parametrize(
    ("text", "name", "found"),
    [
        ("from outbound_sender.providers.vonage import VonageSettings", "vonage", True),
        ("app.send_webhooks_to(Endpoints.vonage)", "vonage", True),
        ("# per-message callbacks (Twilio, Vonage) point there", "vonage", True),
        ("sandbox=Sandbox(sandboxes.SesSandbox, sandboxes.ses_settings, 8095)", "ses", True),
        ('os.environ["SES_REGION"]', "ses", True),
        ("Amazon SES events through SNS", "ses", True),
        ("def twilio_event(params)", "twilio", True),
        ("class TwilioSettings(AccountSettings):", "twilio", True),
        ("far below SendGrid's 30 MB", "sendgrid", True),
        ("sessions = processes.uses(addresses)", "ses", False),
        ("SESSION_TOKEN = 'x'", "ses", False),
        ("the licenses of the responses", "ses", False),
    ],
)
def test_the_scan_finds_a_provider_in_every_spelling(text: str, name: str, found: bool) -> None:
    assert bool(list(mentions(text, name))) is found
