"""OUTBOUND_CALLBACKS_*: the callback dispatcher and the address rule the API applies at registration."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CallbackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTBOUND_CALLBACKS_", extra="ignore")

    allow_private: bool = Field(
        False,
        description="Let callback URLs reach private, loopback, link-local and other non-public addresses "
        "(tests, a cluster-internal receiver). Off: such URLs are refused at registration and at delivery.",
    )
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="Whole POST to a client's endpoint.")
    retry_base_ms: int = Field(5000, ge=1, description="Delay after the first failed attempt (before jitter).")
    retry_max_ms: int = Field(3_600_000, ge=1, description="Cap of one delay between attempts.")
    max_attempts: int = Field(20, ge=1, le=100, description="Attempts before a callback is given up (FAILED).")
    poll_interval_ms: int = Field(1000, ge=10, le=60_000, description="How often an idle dispatcher looks for work.")

    @model_validator(mode="after")
    def _base_below_max(self) -> CallbackSettings:
        if self.retry_base_ms > self.retry_max_ms:
            raise ValueError("OUTBOUND_CALLBACKS_RETRY_BASE_MS must not exceed OUTBOUND_CALLBACKS_RETRY_MAX_MS")
        return self

    def delay_seconds(self, attempts: int, jitter: float) -> float:
        """Wait after failed attempt number `attempts` (1-based): base * 2^(attempts-1), capped, then
        up to 20 % less (`jitter` in [0, 1))."""
        exponent = min(max(attempts - 1, 0), 40)
        delay: float = min(self.retry_max_ms, self.retry_base_ms * 2**exponent) / 1000
        return delay * (1 - 0.2 * jitter)
