"""What every handler shares: settings, database, Kubernetes client, metrics, per-object memory."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from outbound_operator.db import Database
from outbound_operator.kube import Kube
from outbound_operator.metrics import OperatorMetrics
from outbound_operator.reconcile.circuit import Circuit
from outbound_operator.reconcile.scaling import Damping
from outbound_operator.settings import OperatorSettings
from outbound_sender.domain import ProviderControl


@dataclass
class ProviderMemory:
    """The operator's decisions about one ChannelProvider, kept between reconciles.

    Filled from the resource's status on the first reconcile after a start, so a restarted
    operator continues where it stopped (same circuit, same batch size, no repeated Events).
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    circuit: Circuit | None = None
    batch_size: int | None = None
    replicas: int | None = None
    last_scale: str | None = None  # ISO time of the last replica change
    row: ProviderControl | None = None  # last row written or verified
    conditions: list[dict[str, object]] | None = None
    generation: int | None = None  # the spec generation last reconciled (for Ready between reconciles)
    applied: asyncio.Event = field(default_factory=asyncio.Event)  # set once generation is known
    enabled: bool = True  # spec.enabled of that generation
    written: tuple[list[dict[str, object]], int] | None = None  # (conditions, readyReplicas) as last written
    workload_versions: dict[str, str] = field(default_factory=dict)  # kind -> generation/resourceVersion
    seen_kinds: set[str] = field(default_factory=set)  # objects applied by this process
    refused: tuple[int, str] | None = None  # (generation, reason) of the last refusal reported
    deleted: bool = False  # the cleanup handler ran: no reconcile may write for this object again


@dataclass
class QuotaMemory:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conditions: list[dict[str, object]] | None = None
    override_reported: int | None = None  # the manual quota_limit already reported
    generation: int | None = None  # the spec generation last published
    deleted: bool = False  # the cleanup handler ran: no reconcile may write for this object again


@dataclass
class Runtime:
    settings: OperatorSettings
    db: Database
    kube: Kube
    metrics: OperatorMetrics
    providers: dict[str, ProviderMemory] = field(default_factory=dict)  # by uid
    quotas: dict[str, QuotaMemory] = field(default_factory=dict)  # by uid

    @property
    def damping(self) -> Damping:
        s = self.settings
        return Damping(s.scale_down_cooldown_seconds, s.scale_tolerance, s.batch_tolerance)

    def provider(self, uid: str) -> ProviderMemory:
        return self.providers.setdefault(uid, ProviderMemory())

    def quota(self, uid: str) -> QuotaMemory:
        return self.quotas.setdefault(uid, QuotaMemory())


def being_deleted(body: Mapping[str, Any], memory: ProviderMemory | QuotaMemory) -> bool:
    """A timer tick can start just before a deletion and finish after it: such a pass writes nothing."""
    return memory.deleted or bool(body["metadata"].get("deletionTimestamp"))
