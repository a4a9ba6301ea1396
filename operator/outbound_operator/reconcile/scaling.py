"""Scaling decisions on queue depth (pure), like KEDA's PostgreSQL scaler plus HPA-style damping.

- replicas = clamp(ceil(depth / targetQueueDepthPerReplica), min, max);
- up at once (a growing queue is the emergency); down only when the queue is `tolerance` below
  what the current replicas are sized for, no sooner than `cooldown` after the last change, and
  never while messages of the channel are SENDING (a shrinking fleet must not interrupt work);
- batch size follows each replica's share of the queue within the spec's range, published only
  when it moves by more than `batch_tolerance` (the worker re-reads it every cycle).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from outbound_operator.reconcile.spec import ScalingSpec

MAX_BATCH = 1000  # provider_control.batch_size CHECK


@dataclass(frozen=True, slots=True)
class Load:
    depth: int  # QUEUED messages of the channel
    in_flight: int  # SENDING messages of the channel


@dataclass(frozen=True, slots=True)
class Damping:
    cooldown_seconds: float = 300.0
    tolerance: float = 0.1
    batch_tolerance: float = 0.2


@dataclass(frozen=True, slots=True)
class ReplicaDecision:
    replicas: int
    reason: str  # ScaledUp, ScaledDown, Clamped, Steady, HeldInFlight, HeldCoolDown

    @property
    def changed(self) -> bool:
        return self.reason in {"ScaledUp", "ScaledDown", "Clamped"}


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def wanted_replicas(depth: int, spec: ScalingSpec, headroom: float = 0.0) -> int:
    per_replica = spec.target_queue_depth_per_replica
    return clamp(math.ceil(depth * (1.0 + headroom) / per_replica), spec.replicas.min, spec.replicas.max)


def initial_replicas(spec: ScalingSpec) -> int:
    """Replicas before the first measurement: the range's minimum."""
    return spec.replicas.min


def next_replicas(
    current: int,
    load: Load,
    spec: ScalingSpec,
    damping: Damping,
    *,
    last_change: dt.datetime | None,
    now: dt.datetime,
) -> ReplicaDecision:
    bounded = clamp(current, spec.replicas.min, spec.replicas.max)
    up = wanted_replicas(load.depth, spec)
    if up > bounded:
        return ReplicaDecision(up, "ScaledUp")
    if bounded != current:
        return ReplicaDecision(bounded, "Clamped")
    down = wanted_replicas(load.depth, spec, damping.tolerance)
    if down >= current:
        return ReplicaDecision(current, "Steady")
    if load.in_flight > 0:
        return ReplicaDecision(current, "HeldInFlight")
    if last_change is not None and (now - last_change).total_seconds() < damping.cooldown_seconds:
        return ReplicaDecision(current, "HeldCoolDown")
    return ReplicaDecision(down, "ScaledDown")


def wanted_batch(depth: int, replicas: int, spec: ScalingSpec) -> int:
    share = math.ceil(depth / max(replicas, 1))
    high = min(spec.batch_size.max, MAX_BATCH)
    return clamp(share, min(spec.batch_size.min, high), high)


def next_batch(current: int | None, depth: int, replicas: int, spec: ScalingSpec, damping: Damping) -> int:
    """The batch size to publish; unchanged when the move is within the tolerance band."""
    high = min(spec.batch_size.max, MAX_BATCH)
    if current is None:
        return clamp(spec.batch_size.initial, min(spec.batch_size.min, high), high)
    want = wanted_batch(depth, replicas, spec)
    at_bound = want in {spec.batch_size.min, high}
    out_of_range = not spec.batch_size.min <= current <= high
    if out_of_range or (at_bound and want != current) or abs(want - current) > damping.batch_tolerance * current:
        return want
    return current
