"""Which provider a message goes to follows the provider switches and priorities in the environment,
as `outbound worker` reads them: app.build_dispatcher on load_settings(), in sandbox mode (every
provider's client on its local sandbox, nothing is called here)."""

from __future__ import annotations

import os

import pytest

from outbound_sender.app import build_dispatcher
from outbound_sender.config import load_settings
from outbound_sender.domain import Channel, OutboundMessage
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.guarded import NoProviderError

PREFIXES = ("OUTBOUND_", "TWILIO_", "SENDGRID_", "WHATSAPP_", "VONAGE_", "SES_")


def dispatcher(monkeypatch: pytest.MonkeyPatch, **env: str) -> Dispatcher:
    for name in [n for n in os.environ if n.startswith(PREFIXES)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OUTBOUND_PROVIDER_KIND", "sandbox")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_dispatcher(load_settings())


def first_provider(monkeypatch: pytest.MonkeyPatch, channel: Channel, **env: str) -> str:
    message = OutboundMessage(1, "org1", channel, "+15550001234", "", 0, 0, 5, body="hi")
    return dispatcher(monkeypatch, **env).provider_for(message).name


@pytest.mark.parametrize(
    ("channel", "usual", "backup"),
    [(Channel.SMS, "twilio", "vonage"), (Channel.EMAIL, "sendgrid", "ses"), (Channel.WHATSAPP, "whatsapp", "sandbox")],
)
def test_priority_and_switches_from_the_environment_choose_the_provider(
    monkeypatch: pytest.MonkeyPatch, channel: Channel, usual: str, backup: str
) -> None:
    # WhatsApp's only backup is the generic sandbox, which must be listed to be used.
    both = {"OUTBOUND_PROVIDERS_ENABLED": f"{usual},{backup}"}
    cases = [
        ({}, usual),
        ({f"{usual.upper()}_PRIORITY": "2000"}, backup),  # lower numbers are tried first
        ({f"{usual.upper()}_ENABLED": "false"}, backup),
        ({"OUTBOUND_PROVIDERS_ENABLED": backup}, backup),
    ]
    for env, expected in cases:
        with monkeypatch.context() as m:
            assert first_provider(m, channel, **(both | env)) == expected, env
    if backup != "sandbox":  # the backup's own number counts too
        with monkeypatch.context() as m:
            assert first_provider(m, channel, **(both | {f"{backup.upper()}_PRIORITY": "1"})) == backup


@pytest.mark.parametrize("backup", ["vonage", "ses"])
def test_a_backup_switched_off_in_the_environment_takes_nothing(monkeypatch: pytest.MonkeyPatch, backup: str) -> None:
    channel = Channel.SMS if backup == "vonage" else Channel.EMAIL
    env = {"OUTBOUND_PROVIDERS_ENABLED": backup, f"{backup.upper()}_ENABLED": "false"}
    with pytest.raises(NoProviderError):
        first_provider(monkeypatch, channel, **env)
