"""ChannelProvider status (pure): conditions and observed figures from decisions and observations.

Two conditions say different things:

- ``Reconciled``: the operator applied the spec (worker Deployment, ConfigMap, runtime control),
  or why it could not (a refused spec, an API error);
- ``Ready``: the worker Deployment has the replicas it asks for, updated and available, as its
  controller reports them (the same test as ``kubectl rollout status``); otherwise why not,
  e.g. "1 of 2 worker pods available". A Deployment that asks for 0 replicas (replicas.min 0
  with an empty queue) is Ready: that is what the spec asks for.
"""

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
    rollout: Rollout | None = None


@dataclass(frozen=True, slots=True)
class Rollout:
    """The worker Deployment as its controller last reported it."""

    desired: int  # spec.replicas
    current: bool  # the controller has seen the Deployment's latest generation
    updated: int  # pods of the latest template
    total: int  # pods of any template, not terminating
    available: int
    stuck: Mapping[str, Any] | None = None  # Progressing=False or ReplicaFailure=True
    pending: str = ""  # why pods wait, when known (the scheduler's message)
    pulling: str = ""  # a pod's container cannot get its image (the kubelet's reason: message)

    @property
    def done(self) -> bool:
        """Every desired pod updated and available, no old pod left (Ready, unless the controller lags)."""
        return self.updated >= self.desired and self.total <= self.updated and self.available >= self.desired

    @classmethod
    def of(cls, deployment: Mapping[str, Any], pending: str = "", pulling: str = "") -> Rollout:
        meta, spec, status = (deployment.get(key) or {} for key in ("metadata", "spec", "status"))
        desired = spec.get("replicas")
        return cls(
            desired=1 if desired is None else int(desired),  # the API server defaults an absent one to 1
            current=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            total=int(status.get("replicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            stuck=_stuck_rollout(tuple(status.get("conditions") or ())),
            pending=pending,
            pulling=pulling,
        )


def reconciled(error: str | None, *, reason: str = "ReconcileFailed") -> Condition:
    if error is not None:
        return Condition("Reconciled", False, reason, error)
    return Condition("Reconciled", True, "Applied", "worker Deployment, ConfigMap and runtime control applied")


def ready(
    error: str | None, enabled: bool, rollout: Rollout | None = None, *, reason: str = "ReconcileFailed"
) -> Condition:
    """Ready: the worker pods the Deployment asks for are updated and available (an error: why not)."""
    if error is not None:
        return Condition("Ready", False, reason, error)
    note = "" if enabled else " (disabled: messages wait QUEUED)"
    if rollout is None:
        return Condition("Ready", False, "DeploymentMissing", "no worker Deployment observed yet")
    condition = workers(rollout)
    return Condition("Ready", condition.status, condition.reason, condition.message + note)


def workers(rollout: Rollout) -> Condition:
    pods = f"{rollout.available} of {rollout.desired} worker pods available"
    if rollout.pending:
        pods += f"; pods unschedulable: {rollout.pending}"
    if rollout.pulling:
        pods += f"; image pull failing: {rollout.pulling}"
    if not rollout.current:
        return Condition(
            "Ready", False, "RolloutPending", f"Deployment rollout not yet observed by its controller; {pods}"
        )
    if rollout.stuck is not None:
        reason = str(rollout.stuck.get("reason") or "DeploymentNotProgressing")
        return Condition("Ready", False, reason, f"{pods}; {rollout.stuck.get('message') or 'rollout not progressing'}")
    if rollout.updated < rollout.desired:
        what = f"{rollout.updated} of {rollout.desired} pods updated"
        return Condition("Ready", False, "RolloutInProgress", f"Deployment rollout in progress: {what}; {pods}")
    if rollout.total > rollout.updated:
        old = rollout.total - rollout.updated
        what = f"{old} old pod{'s' if old != 1 else ''} still running"
        return Condition("Ready", False, "RolloutInProgress", f"Deployment rollout in progress: {what}; {pods}")
    if rollout.available < rollout.desired:
        reason = (
            "PodsUnschedulable" if rollout.pending else "ImagePullFailing" if rollout.pulling else "WorkersUnavailable"
        )
        return Condition("Ready", False, reason, pods)
    if rollout.desired == 0:
        return Condition("Ready", True, "NoWorkersRequested", "0 worker replicas requested (scaled to zero)")
    return Condition("Ready", True, "WorkersAvailable", pods)


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
    return [
        reconciled(error),
        ready(error, enabled, observed.rollout),
        circuit_open(observed.circuit),
        degraded(observed),
    ]


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
