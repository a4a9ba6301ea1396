"""The worker's settings: its claim loop and the per-channel switches (composed by config.py)."""

from __future__ import annotations

import os
import socket
from typing import Annotated

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from outbound_sender.domain import Channel
from outbound_sender.worker.cpus import default_processes


def _split_channels(value: object) -> object:
    if isinstance(value, str):
        return [part.strip().upper() for part in value.split(",") if part.strip()]
    return value


class WorkerSettings(BaseSettings):
    """OutboundJobWorker: the claim loop."""

    model_config = SettingsConfigDict(env_prefix="OUTBOUND_WORKER_", extra="ignore")

    enabled: bool = Field(True, description="Runbook switch: false stops claiming; queued messages wait.")
    batch_size: int = Field(10, ge=1, le=1000, description="Messages claimed per batch (runbook default 10).")
    poll_interval_ms: int = Field(
        5000, ge=10, le=600_000, description="Safety-net poll; NOTIFY wakes the worker sooner."
    )
    processes: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Worker processes of `outbound worker` (each with its own claim loop and at most 3 "
        "database connections; one pod port and one /metrics for all). Default: the container's CPU "
        "limit rounded up (cgroup cpu.max), else the CPUs available.",
    )
    max_in_flight: int = Field(
        50, ge=1, le=5000, description="Concurrent provider calls per process (bounded asyncio tasks)."
    )
    lease_seconds: float = Field(
        60.0,
        ge=1.0,
        le=3600.0,
        description="A claimed message is SENDING for at most this long (database clock) before recovery "
        "requeues it; must exceed the provider timeout, so a live send never loses its lease.",
    )
    recovery_interval_ms: int = Field(2000, ge=100, le=600_000, description="How often expired leases are looked for.")
    shutdown_grace_seconds: float = Field(
        30.0, ge=0.0, le=3600.0, description="SIGTERM: time to finish in-flight sends before giving up."
    )
    control_interval_ms: int = Field(
        1000, ge=100, le=60_000, description="How often runtime control (channel switches) is re-read."
    )
    channels: Annotated[list[Channel], NoDecode] = Field(
        default_factory=lambda: list(Channel),
        description="Channels this worker sends (comma-separated); one Deployment per ChannelProvider "
        "narrows it to its own channel.",
    )
    id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="Lease owner name written on claimed rows.",
    )

    def process_count(self) -> int:
        """OUTBOUND_WORKER_PROCESSES, or the default from the CPU limit (worker/cpus.py)."""
        return self.processes if self.processes is not None else default_processes()

    @model_validator(mode="before")
    @classmethod
    def _channels_from_csv(cls, data: object) -> object:
        if isinstance(data, dict) and "channels" in data:
            data["channels"] = _split_channels(data["channels"])
        return data


class ChannelSwitches(BaseSettings):
    """Per-channel kill switches (runbook: WHATSAPP_PROVIDER_ENABLED). Disabled channels stay QUEUED."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    sms_provider_enabled: bool = True
    email_provider_enabled: bool = True
    whatsapp_provider_enabled: bool = True

    def enabled(self) -> frozenset[Channel]:
        flags = {
            Channel.SMS: self.sms_provider_enabled,
            Channel.EMAIL: self.email_provider_enabled,
            Channel.WHATSAPP: self.whatsapp_provider_enabled,
        }
        return frozenset(channel for channel, on in flags.items() if on)
