"""ChannelProvider status (pure): conditions and observed figures from decisions and observations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from outbound_operator.reconcile.circuit import CRD_SPELLING, FORCED_OPEN, FROM_CRD, Calls, Circuit
from outbound_operator.reconcile.conditions import Condition, timestamp
from outbound_sender.domain import CircuitState


@dataclass(frozen=True, slots=True)
class Observed:
    """What one reconcile saw and decided, for the status."""

    circuit: Circuit
    calls: Calls | None
    queue_depth: int | None
    batch_size: int
    replicas: int | None
    ready_replicas: int
    deployment_conditions: tuple[Mapping[str, Any], ...] = ()


def ready(error: str | None, enabled: bool, *, reason: str = "ReconcileFailed") -> Condition:
    if error is not None:
        return Condition("Ready", False, reason, error)
    note = "" if enabled else " (disabled: messages wait QUEUED)"
    return Condition("Ready", True, "Reconciled", "worker Deployment, ConfigMap and runtime control applied" + note)


def circuit_open(circuit: Circuit) -> Condition:
    message = circuit.message or f"circuit {CRD_SPELLING[circuit.state]}"
    return Condition("CircuitOpen", circuit.state is not CircuitState.CLOSED, circuit.reason, message)


def _stuck_rollout(deployment_conditions: tuple[Mapping[str, Any], ...]) -> Mapping[str, Any] | None:
    for condition in deployment_conditions:
        kind, status = condition.get("type"), condition.get("status")
        if (kind == "Progressing" and status == "False") or (kind == "ReplicaFailure" and status == "True"):
            return condition
    return None


def degraded(observed: Observed) -> Condition:
    circuit = observed.circuit
    if circuit.state is CircuitState.OPEN and circuit.reason != FORCED_OPEN:
        return Condition("Degraded", True, "CircuitOpen", circuit.message or "provider failing: circuit open")
    stuck = _stuck_rollout(observed.deployment_conditions)
    if stuck is not None:
        reason = str(stuck.get("reason") or "DeploymentNotProgressing")
        return Condition("Degraded", True, reason, str(stuck.get("message") or "worker Deployment not progressing"))
    return Condition("Degraded", False, "AsExpected", "provider healthy")


def conditions(observed: Observed, error: str | None, enabled: bool) -> list[Condition]:
    return [ready(error, enabled), circuit_open(observed.circuit), degraded(observed)]


def figures(observed: Observed, now: dt.datetime) -> dict[str, Any]:
    circuit = observed.circuit
    status: dict[str, Any] = {
        "circuit": {"state": CRD_SPELLING[circuit.state], "since": timestamp(circuit.since), "reason": circuit.reason},
        "batchSize": observed.batch_size,
        "readyReplicas": observed.ready_replicas,
        "observedAt": timestamp(now),
    }
    if observed.replicas is not None:
        status["replicas"] = observed.replicas
    if observed.queue_depth is not None:
        status["queueDepth"] = observed.queue_depth
    if observed.calls is not None:
        rate = observed.calls.success_rate
        status["requestsInWindow"] = observed.calls.total
        status["successRatePercent"] = None if rate is None else round(rate, 1)
    return status


def circuit_from_status(status: Mapping[str, Any]) -> Circuit | None:
    """The circuit as last decided (the operator's memory across restarts)."""
    saved = status.get("circuit") or {}
    if not saved.get("state") or not saved.get("since"):
        return None
    state = FROM_CRD[saved["state"]]
    since = dt.datetime.fromisoformat(str(saved["since"]).replace("Z", "+00:00"))
    condition: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "CircuitOpen"), {}
    )
    return Circuit(state, since, str(saved.get("reason") or ""), str(condition.get("message") or ""))
