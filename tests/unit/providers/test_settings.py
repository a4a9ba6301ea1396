"""Provider settings: environment names, mounted secret files, credentials never in repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from outbound_sender.errors import ConfigError
from outbound_sender.providers.accounts import load_provider_settings
from outbound_sender.providers.settings import ProvidersSettings
from outbound_sender.providers.twilio import TwilioSettings
from outbound_sender.providers.whatsapp import WhatsAppSettings


def test_secret_file_wins_and_is_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "from-env")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN_FILE", str(token))
    settings = TwilioSettings()
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == "from-file"
    assert "from-file" not in repr(settings)


def test_missing_secret_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="cannot read secret file"):
        load_provider_settings()


def test_bad_account_sid_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "not-a-sid")
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        load_provider_settings()


def test_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHATSAPP_API_VERSION", "v21.0")
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "123")
    monkeypatch.setenv("OUTBOUND_PROVIDERS_ENABLED", "Twilio, sandbox")
    assert WhatsAppSettings().api_version == "v21.0"
    assert ProvidersSettings().enabled == ["twilio", "sandbox"]
    monkeypatch.setenv("WHATSAPP_API_VERSION", "23")
    with pytest.raises(ValueError, match="api_version"):
        WhatsAppSettings()


def test_the_webhooks_check_the_accounts_the_settings_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from outbound_sender.webhooks.router import webhook_config

    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "123")
    config = webhook_config(load_provider_settings())
    sms, chat = config.accounts["twilio"], config.accounts["whatsapp"]
    assert isinstance(sms, TwilioSettings)
    assert isinstance(chat, WhatsAppSettings)
    assert (sms.account_sid, chat.phone_number_id) == ("AC" + "1" * 32, "123")


def test_an_opt_in_backup_is_used_only_where_named_or_in_sandbox_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """A live process with no Vonage account keeps starting after Vonage joined the registry."""
    from outbound_sender import app
    from outbound_sender.providers import registry

    backups = {p.name for p in registry.accounts() if p.opt_in}
    assert "vonage" in backups
    monkeypatch.delenv("OUTBOUND_PROVIDERS_ENABLED", raising=False)
    live = load_provider_settings()
    assert not backups & set(live.in_use())
    assert {"twilio", "sendgrid", "whatsapp"} <= set(live.in_use())
    assert backups <= set(app.with_sandbox_defaults(load_provider_settings()).in_use())
    monkeypatch.setenv("OUTBOUND_PROVIDERS_ENABLED", "twilio,vonage")
    named = load_provider_settings()
    assert named.in_use() == ["twilio", "vonage"]
    assert app.with_sandbox_defaults(load_provider_settings()).in_use() == ["twilio", "vonage"]
