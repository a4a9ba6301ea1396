"""Settings of the provider accounts, the webhooks, the circuit breaker and failover.

Each provider's account model (its module in providers/, named by its registry entry) derives from
AccountSettings. Credentials come from the environment (<PREFIX>_API_KEY) or from a mounted secret
file named by the *_FILE variable (<PREFIX>_API_KEY_FILE=/var/run/secrets/<provider>/api-key,
read_secret_files); the file wins when both are set, since a mounted Secret is the Kubernetes way.
They are pydantic SecretStr: their repr is '**********', so they never reach a log line. Base URLs
default to the real APIs; `outbound run` (OUTBOUND_PROVIDER_KIND=sandbox) points them at the local
sandboxes instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from outbound_sender.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)


def read_secret_files(data: Any, names: tuple[str, ...]) -> Any:
    """Fill `name` from the file named by `name_file` (stripped of its trailing newline)."""
    if not isinstance(data, dict):
        return data
    for name in names:
        path = data.get(f"{name}_file")
        if path:
            try:
                data[name] = Path(path).read_text().strip()
            except OSError as error:
                raise ValueError(f"cannot read secret file {path}: {error.strerror}") from None
    return data


def secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


class AccountSettings(BaseSettings):
    """What every real provider's account has: its switch, its failover order and its API's base URL.
    Each provider's model (its entry in providers/registry.py) adds credentials and sender fields."""

    enabled: bool = Field(True, description="Send through this provider (OUTBOUND_PROVIDERS_ENABLED must list it too).")
    priority: int = Field(10, description="Failover order inside the channel: lower is tried first.")
    base_url: str = Field(description="Real API, a sandbox or a mock.")


class WebhookSettings(BaseSettings):
    """Where providers reach our delivery webhooks."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_WEBHOOK_", extra="ignore")

    public_url: str | None = Field(
        None,
        description="Public base URL of the webhook endpoints as the provider calls them "
        "(https://api.example.com behind a proxy). Providers that sign the URL sign this exact one. Unset: "
        "no per-message callback URL is sent and signatures are checked against the URL the server sees.",
    )
    path_prefix: str = Field("/webhooks", description="Where webhooks.router() is mounted.")
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Larger webhook bodies are refused (413).")


class FailoverSettings(BaseSettings):
    """The per-pod circuit breaker and failover between providers of one channel."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_CIRCUIT_", extra="ignore")

    failure_threshold: int = Field(
        5, ge=1, le=1000, description="Consecutive provider-side failures (5xx, timeouts) that open it."
    )
    open_seconds: float = Field(
        30.0, gt=0, le=3600, description="Cool-down before half-open probes: long enough to not hammer."
    )
    half_open_probes: int = Field(1, ge=1, le=100, description="Concurrent probe sends while HALF_OPEN.")


class ProvidersSettings(BaseSettings):
    """Which providers send, and the ambiguous-send policy."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_PROVIDERS_", extra="ignore")

    enabled: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Comma-separated provider names (unset: every provider with an account but the opt-in "
        "backups), and optionally 'sandbox' (the generic sandbox, every channel: a backup for demos). "
        "Each provider's own *_ENABLED must also be true; an unknown name is refused.",
    )
    ambiguous_retry_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Floor of the delay before retrying a send that got no answer: gives the provider's "
        "delivery webhook time to arrive and prove the first send went through.",
    )

    @model_validator(mode="before")
    @classmethod
    def _csv(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("enabled"), str):
            data["enabled"] = [p.strip().lower() for p in data["enabled"].split(",") if p.strip()]
        return data


class SandboxServerSettings(BaseSettings):
    """Where `outbound run` / `outbound sandbox` serve the provider sandboxes (loopback). The port of
    each (OUTBOUND_SANDBOX_<NAME>_PORT) is a field that providers/accounts.py adds per provider."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_SANDBOX_", extra="ignore")

    host: str = "127.0.0.1"

    def port(self, provider: str) -> int:
        return int(getattr(self, f"{provider}_port"))

    def url(self, provider: str) -> str:
        return f"http://{self.host}:{self.port(provider)}"


def load_group(model: type[S]) -> S:
    """One settings group from the environment; ConfigError names each bad environment variable
    (never its value when it is a credential)."""
    try:
        return model()
    except ValidationError as error:
        prefix = str(model.model_config.get("env_prefix", ""))
        lines = [
            f"  {(prefix + '_'.join(str(p) for p in item['loc'])).upper()}: {item['msg']}" for item in error.errors()
        ]
        raise ConfigError("invalid provider settings:\n" + "\n".join(lines)) from None
