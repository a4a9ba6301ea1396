"""Every provider settings group loaded together: one account per registered provider, the
webhooks, failover, which providers are enabled, and where the sandboxes listen."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import Field, create_model

from outbound_sender.errors import ConfigError
from outbound_sender.providers import registry
from outbound_sender.providers.settings import (
    AccountSettings,
    FailoverSettings,
    ProvidersSettings,
    SandboxServerSettings,
    WebhookSettings,
    load_group,
)

A = TypeVar("A", bound=AccountSettings)

# OUTBOUND_SANDBOX_<NAME>_PORT for each provider with a sandbox.
_PORTS: dict[str, Any] = {
    f"{p.name}_port": (int, Field(p.sandbox.port, ge=0, le=65535)) for p in registry.sandboxed() if p.sandbox
}
_SandboxPorts = create_model("SandboxServerSettings", __base__=SandboxServerSettings, **_PORTS)


class AllProviderSettings:
    """Every provider group, loaded together (ConfigError names the bad variable)."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountSettings] = {
            p.name: load_group(p.settings) for p in registry.accounts() if p.settings is not None
        }
        self.webhook = load_group(WebhookSettings)
        self.failover = load_group(FailoverSettings)
        self.providers = load_group(ProvidersSettings)
        self.sandbox = load_group(_SandboxPorts)
        self.enabled = self._enabled(self.providers.enabled)

    @staticmethod
    def _enabled(names: list[str] | None) -> list[str]:
        """OUTBOUND_PROVIDERS_ENABLED, known names only (unset: every provider with an account but the
        opt-in backups, which sandbox mode adds: app.with_sandbox_defaults)."""
        if names is None:
            return [p.name for p in registry.accounts() if not p.opt_in]
        for name in names:
            try:
                registry.entry(name)
            except registry.UnknownProvider as error:
                raise ConfigError(f"OUTBOUND_PROVIDERS_ENABLED: {error}") from None
        return names

    def account(self, model: type[A]) -> A:
        """The loaded account of the provider whose settings model is `model`."""
        for account in self.accounts.values():
            if isinstance(account, model):
                return account
        raise KeyError(model.__name__)

    def in_use(self) -> list[str]:
        """Providers with an account, as far as OUTBOUND_PROVIDERS_ENABLED and each one's *_ENABLED allow."""
        return [name for name, account in self.accounts.items() if name in self.enabled and account.enabled]


def load_provider_settings() -> AllProviderSettings:
    """Load every provider group; ConfigError names each bad environment variable (never its value
    when it is a credential)."""
    return AllProviderSettings()
