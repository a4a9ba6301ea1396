"""Operator settings from the environment (prefix OUTBOUND_OPERATOR_), validated at start-up.

Each field documents its unit and why its default. `load_settings()` turns a validation failure
into a ConfigError naming the environment variable, so a bad setting stops start-up with a clear
message instead of a traceback.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from outbound_sender.errors import ConfigError

ENV_PREFIX = "OUTBOUND_OPERATOR_"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
IMAGE_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_DIGEST = r"sha256:[a-f0-9]{64}"
# An image reference: repository, optional tag, optional digest (the distribution reference grammar).
IMAGE_REFERENCE = re.compile(
    rf"^(?P<repository>{_REPOSITORY})(?::(?P<tag>{IMAGE_TAG}))?(?:@(?P<digest>{IMAGE_DIGEST}))?$"
)


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    database_url: str = Field(
        description="PostgreSQL DSN of the sender database: the operator writes provider_control and "
        "whatsapp_quota_policy there and reads queue depth and success rates (required)."
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch, comma-separated; empty watches the whole cluster.",
    )
    standalone: bool = Field(False, description="No peering (tests, single replica); HA deployments use peering.")
    peering_name: str = Field("outbound-operator", description="KopfPeering object shared by the replicas.")
    priority: int = Field(0, ge=0, le=1_000_000, description="Peering priority: the highest-priority replica acts.")
    reconcile_interval_seconds: float = Field(
        5.0,
        ge=0.2,
        le=300.0,
        description="Timer period: success rate, queue depth, scaling and drift checks. 5 s keeps the "
        "circuit breaker and the scaler responsive for one cheap indexed query per provider.",
    )
    scale_down_cooldown_seconds: float = Field(
        300.0, ge=0.0, le=86_400.0, description="Minimum time between two scale-downs (HPA's default window)."
    )
    scale_tolerance: float = Field(
        0.1, ge=0.0, le=1.0, description="Hysteresis: scale down only when 10 % more depth would still fit."
    )
    batch_tolerance: float = Field(
        0.2, ge=0.0, le=1.0, description="Batch size changes smaller than this share are not published."
    )
    half_open_probes_to_close: int = Field(
        3, ge=1, le=1000, description="Probe calls judged in half-open before closing or re-opening the circuit."
    )
    worker_image: str = Field(
        "ghcr.io/outbound-messaging/outbound-sender:0.1.0",
        description="Worker container image when spec.image is empty; its repository is always allowed.",
    )
    worker_image_pull_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="docker-registry Secrets (names, comma-separated, in the ChannelProvider's namespace) "
        "every worker pod pulls its image with, before the ChannelProvider's own spec.imagePullSecrets: "
        "the chart passes its imagePullSecrets, since the workers run the sender image by default.",
    )
    worker_image_repositories: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Further repositories (registry/path, no tag), comma-separated, whose images a "
        "ChannelProvider's spec.image may name; empty: only worker_image's repository.",
    )
    allow_insecure_sandbox_endpoint: bool = Field(
        False,
        description="Let a sandbox-kind ChannelProvider use an http:// endpoint (local tests); real "
        "providers always need https://.",
    )
    worker_database_secret: str = Field(
        "outbound-database",
        description="Secret (in the ChannelProvider's namespace) whose key 'url' holds the workers' DATABASE_URL.",
    )
    worker_redis_secret: str = Field(
        "", description="Secret whose key 'url' holds REDIS_URL for the workers; empty: no Redis."
    )
    worker_service_account: str = Field(
        "", description="ServiceAccount of the worker pods; empty: the namespace default (no API token mounted)."
    )
    worker_webhook_public_url: str = Field(
        "",
        pattern=r"^(https?://[^\s]+)?$",
        description="Public base URL of the webhook router (the API's OUTBOUND_WEBHOOK_PUBLIC_URL): the "
        "workers ask the providers that take a callback URL with each message to report its status there. "
        "Empty: they ask for none, and such providers send no receipts.",
    )
    provider_connect_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Workers' provider connect timeout.")
    provider_read_timeout_seconds: float = Field(20.0, gt=0, le=300, description="Workers' provider read timeout.")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Prometheus /metrics port; 0 disables it.")
    health_port: int = Field(8081, ge=0, le=65535, description="kopf liveness /healthz port; 0 disables it.")
    log_format: str = Field("logfmt", pattern="^(logfmt|json)$", description="logfmt (grep-able) or json.")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("namespaces", "worker_image_repositories", "worker_image_pull_secrets", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("worker_image")
    @classmethod
    def _image_reference(cls, value: str) -> str:
        if not IMAGE_REFERENCE.match(value):
            raise ValueError(f"not an image reference (registry/repository[:tag][@sha256:digest]): {value!r}")
        return value

    @field_validator("worker_image_repositories")
    @classmethod
    def _repositories(cls, value: list[str]) -> list[str]:
        for repository in value:
            match = IMAGE_REFERENCE.match(repository)
            if match is None or match["repository"] != repository:
                raise ValueError(f"not a repository without tag or digest: {repository!r}")
        return value

    @model_validator(mode="after")
    def _ports_differ(self) -> OperatorSettings:
        if self.metrics_port and self.metrics_port == self.health_port:
            raise ValueError("OUTBOUND_OPERATOR_METRICS_PORT and OUTBOUND_OPERATOR_HEALTH_PORT must differ")
        return self

    @property
    def worst_send_seconds(self) -> float:
        """The longest a provider call can take: connect plus read timeout."""
        return self.provider_connect_timeout_seconds + self.provider_read_timeout_seconds

    @property
    def worker_shutdown_grace_seconds(self) -> int:
        """Worker's SIGTERM drain: the worst in-flight send plus 5 s to record its result."""
        return int(self.worst_send_seconds) + 5

    @property
    def termination_grace_seconds(self) -> int:
        """Pod grace period: longer than the worker's drain, so Kubernetes never SIGKILLs a send."""
        return self.worker_shutdown_grace_seconds + 10


def load_settings(**overrides: object) -> OperatorSettings:
    try:
        return OperatorSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in error.errors()
        )
        raise ConfigError(f"invalid operator settings: {problems}") from None
