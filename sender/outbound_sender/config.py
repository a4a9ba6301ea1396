"""Settings from the environment, named as the runbook names them, validated at start-up.

Each group is a pydantic-settings model whose fields document their unit and why the default.
`load_settings()` turns validation failures into a ConfigError that names the environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from outbound_sender.api.settings import ApiSettings
from outbound_sender.callbacks.settings import CallbackSettings
from outbound_sender.errors import ConfigError
from outbound_sender.tracing import TracingSettings
from outbound_sender.worker.settings import ChannelSwitches, WorkerSettings


class RetrySettings(BaseSettings):
    """Exponential backoff with jitter between attempts of one message."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_RETRY_", extra="ignore")

    base_ms: int = Field(2000, ge=1, description="Delay before the 2nd attempt (before jitter).")
    max_ms: int = Field(3_600_000, ge=1, description="Cap of one delay: 1 h keeps a message moving.")
    max_hint_seconds: float = Field(
        86_400.0, ge=0, description="Provider hints (Retry-After, X-RateLimit-Reset) are capped here."
    )

    @model_validator(mode="after")
    def _base_below_max(self) -> RetrySettings:
        if self.base_ms > self.max_ms:
            raise ValueError("OUTBOUND_RETRY_BASE_MS must not exceed OUTBOUND_RETRY_MAX_MS")
        return self


class MetricsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTBOUND_METRICS_", extra="ignore")

    update_interval_ms: int = Field(
        10_000, ge=100, le=3_600_000, description="Refresh of database-derived gauges (runbook default)."
    )
    port: int = Field(
        9090,
        ge=1,
        le=65535,
        description="Where a process serving the message API exposes /actuator/prometheus and /metrics "
        "(on OUTBOUND_HTTP_HOST), never on the public API port: the exposition has no authentication and "
        "names every organisation. Worker-only processes keep them on their service port.",
    )


ProviderKind = Literal["sandbox", "live", "generic", "null"]


class ProviderSettings(BaseSettings):
    """Which provider implementation the worker uses, and where it is."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_PROVIDER_", extra="ignore")

    kind: ProviderKind | None = Field(
        None,
        description="sandbox: every provider's client on its local sandbox, with the sandbox "
        "accounts' public secrets; live: on the configured (real) APIs, every webhook verified with its "
        "provider's secret; generic: the generic sandbox; null: in-process no-op (benchmarks). No default: "
        "only `outbound run` falls back to sandbox, every other entry point refuses to start without it.",
    )
    sandbox_url: str = Field("http://127.0.0.1:8090", description="Base URL of the sandbox provider.")
    name: str | None = Field(
        None,
        description="The ChannelProvider this worker serves (set by the operator): its one provider takes "
        "this name in outbound_attempt.provider and metrics, and provider_control rows apply to it.",
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, le=60)
    read_timeout_seconds: float = Field(20.0, gt=0, le=300)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: str | None = Field(None, description="PostgreSQL DSN; unset: embedded server.")
    redis_url: str | None = Field(None, description="Redis URL; unset: embedded redis-server.")
    outbound_state_dir: Path = Field(Path(".state"), description="Embedded servers' data (git-ignored).")
    outbound_http_host: str = "0.0.0.0"
    outbound_http_port: int = Field(8080, ge=1, le=65535, description="The runbook's service port.")
    outbound_log_format: Literal["logfmt", "json"] = "logfmt"
    outbound_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AllSettings:
    """Every group, loaded and validated together."""

    def __init__(self) -> None:
        self.base = Settings()
        self.worker = WorkerSettings()
        self.switches = ChannelSwitches()
        self.retry = RetrySettings()
        self.metrics = MetricsSettings()
        self.provider = ProviderSettings()
        self.api = ApiSettings()
        self.callbacks = CallbackSettings()
        self.tracing = TracingSettings()


def _describe(error: ValidationError, prefix: str) -> str:
    lines = []
    for item in error.errors():
        name = (prefix + "_".join(str(part) for part in item["loc"])).upper()
        value = item.get("input")
        lines.append(f"  {name}={value!r}: {item['msg']}")
    return "invalid settings:\n" + "\n".join(lines)


def load_settings() -> AllSettings:
    """Load every settings group; raise ConfigError naming each bad environment variable."""
    prefixes = {
        WorkerSettings: "OUTBOUND_WORKER_",
        RetrySettings: "OUTBOUND_RETRY_",
        MetricsSettings: "OUTBOUND_METRICS_",
        ProviderSettings: "OUTBOUND_PROVIDER_",
        ApiSettings: "OUTBOUND_API_",
        CallbackSettings: "OUTBOUND_CALLBACKS_",
        TracingSettings: "OUTBOUND_TRACING_",
    }
    try:
        return AllSettings()
    except ValidationError as error:
        model = error.title
        prefix = next((p for cls, p in prefixes.items() if cls.__name__ == model), "")
        raise ConfigError(_describe(error, prefix)) from None
