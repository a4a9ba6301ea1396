"""The custom resources' specs as pydantic models (the boundary between Kubernetes and our logic).

The API server has already validated and defaulted the spec (crds/*.yaml); these models read it
with the same defaults so that a spec written before a default existed still parses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from outbound_sender.domain import CircuitMode
from outbound_sender.providers import registry

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as 10m, 1h30m, 1.5s or 500ms (the subset the CRDs accept)."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class SecretRef(_Spec):
    name: str
    namespace: str | None = None  # not in the CRD (pruned there); refused unless it is the CR's own
    keys: dict[str, str] = Field(default_factory=dict)

    def key(self, credential: str) -> str:
        """The Secret data key holding `credential` (the credential's own name unless remapped)."""
        return self.keys.get(credential, credential)


class CircuitBreakerSpec(_Spec):
    mode: CircuitMode = CircuitMode.AUTO
    failure_rate_threshold: int = 50
    window: str = "10m"
    minimum_requests: int = 20
    cool_down: str = "60s"
    half_open_probes_per_minute: int = 6

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.window)

    @property
    def cool_down_seconds(self) -> float:
        return parse_duration(self.cool_down)


class Range(_Spec):
    min: int
    max: int


class BatchSizeSpec(Range):
    min: int = 1
    max: int = 100
    initial: int = 10


class ReplicasSpec(Range):
    min: int = 1
    max: int = 5
    managed_by: Literal["Operator", "External"] = "Operator"


class ScalingSpec(_Spec):
    batch_size: BatchSizeSpec = Field(default_factory=BatchSizeSpec)
    replicas: ReplicasSpec = Field(default_factory=ReplicasSpec)
    target_queue_depth_per_replica: int = 1000


class SecretKeyRef(_Spec):
    name: str
    key: str


class EnvSource(_Spec):
    secret_key_ref: SecretKeyRef


class EnvVar(_Spec):
    """An extra environment variable of the worker: a plain value, or a key of a Secret."""

    name: str
    value: str | None = None
    value_from: EnvSource | None = None

    def manifest(self) -> dict[str, Any]:
        if self.value_from is not None:
            ref = self.value_from.secret_key_ref
            return {"name": self.name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        return {"name": self.name, "value": self.value or ""}


class LocalObjectReference(_Spec):
    name: str


class ChannelProviderSpec(_Spec):
    channel: Literal["SMS", "EMAIL", "WHATSAPP"]
    provider: str  # a name of the provider registry (outbound_sender/providers/registry.py)
    enabled: bool = True
    priority: int = 100
    credentials_secret_ref: SecretRef | None = None
    endpoint: str | None = None
    sender: dict[str, str] | None = None  # spec.<provider>: the provider's own sender settings
    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    image: str | None = None
    resources: dict[str, dict[str, Any]] | None = None
    # Placement and environment of the worker pods (reconcile/workload.py, worker_pod_settings).
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    env: list[EnvVar] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _sender_settings(cls, data: Any) -> Any:
        """The block named after the provider (spec.<provider>) is its sender settings."""
        if isinstance(data, dict) and isinstance(data.get("provider"), str) and "sender" not in data:
            return {**data, "sender": data.get(data["provider"])}
        return data

    @field_validator("provider")
    @classmethod
    def _registered(cls, name: str) -> str:
        registry.entry(name)  # UnknownProvider (a ValueError) names the known ones
        return name

    @property
    def entry(self) -> registry.ProviderEntry:
        return registry.entry(self.provider)

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> ChannelProviderSpec:
        return cls.model_validate(dict(spec))


TIER_LIMITS = {"Tier250": 250, "Tier1K": 1000, "Tier10K": 10_000, "Tier100K": 100_000}


class QuotaPolicySpec(_Spec):
    org_id: str
    tier: Literal["Tier250", "Tier1K", "Tier10K", "Tier100K", "Unlimited"] | None = None
    daily_limit: int | None = None
    reset_period: str = "24h"
    messages_per_second: int = 80
    pair_rate_seconds: int = 6
    alert_thresholds: list[int] = Field(default_factory=lambda: [70, 85, 95])
    urgent_templates: list[str] = Field(default_factory=lambda: ["urgent_alert", "appointment_reminder"])
    defer_non_urgent_above_percent: int | None = None
    fallback_channel: Literal["SMS", "EMAIL", "None"] = "None"

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> QuotaPolicySpec:
        return cls.model_validate(dict(spec))

    @property
    def org(self) -> str:
        """The ledger key: the organisation (the org_id of its messages)."""
        return self.org_id

    @property
    def limit(self) -> int | None:
        """Conversations per period; None is unlimited."""
        if self.daily_limit is not None:
            return self.daily_limit
        return TIER_LIMITS.get(self.tier or "Unlimited")

    @property
    def reset_period_seconds(self) -> int:
        return int(parse_duration(self.reset_period))
