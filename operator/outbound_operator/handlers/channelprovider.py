"""ChannelProvider: one reconcile for create, update, resume and the timer.

    measure (database clock, success rate, queue depth)
      -> decide (circuit, replicas, batch size: reconcile/, pure)
      -> publish the control row first (workers act on it within a second, via NOTIFY)
      -> server-side apply the ConfigMap and the Deployment (kube)
      -> status (conditions + figures) through kopf's patch

Spec changes run it at once (so ForceOpen stops sends within about a second); the timer runs it
every OUTBOUND_OPERATOR_RECONCILE_INTERVAL_SECONDS for measurements and drift. A per-object lock
keeps the two from interleaving.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from outbound_operator.handlers import workloads
from outbound_operator.handlers.context import ProviderMemory, Runtime, being_deleted
from outbound_operator.reconcile import admission, control, scaling
from outbound_operator.reconcile import circuit as breaker
from outbound_operator.reconcile import status as provider_status
from outbound_operator.reconcile.conditions import find, set_all, timestamp
from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_operator.reconcile.workload import env_refusal
from outbound_operator.reconcile.workload import names as workload_names
from outbound_sender.domain import CircuitState, ProviderControl

GROUP, VERSION, PLURAL = "messaging.outbound.dev", "v1alpha1", "channelproviders"
WRITTEN_UNDER_LOCK = ("conditions", "readyReplicas")  # by publish_conditions, never through kopf's patch
log = logging.getLogger("outbound_operator.channelprovider")


def remember(memory: ProviderMemory, status: Mapping[str, Any], row: ProviderControl | None) -> None:
    """First reconcile in this process: take the decisions back from status (or the row)."""
    if memory.conditions is not None:
        return
    memory.conditions = [dict(c) for c in status.get("conditions") or []]
    memory.circuit = provider_status.circuit_from_status(status)
    if memory.circuit is None and row is not None and row.circuit_since is not None:
        memory.circuit = breaker.Circuit(row.circuit_state, row.circuit_since, row.circuit_reason or "", "")
    memory.batch_size = status.get("batchSize") or (row.batch_size if row else None)
    memory.replicas = status.get("replicas")
    memory.last_scale = status.get("lastScaleTime")
    memory.row = row


async def decide_circuit(
    rt: Runtime, body: kopf.Body, spec: ChannelProviderSpec, memory: ProviderMemory, now: dt.datetime
) -> tuple[breaker.Circuit, breaker.Calls]:
    current = memory.circuit or breaker.initial(now)
    policy = spec.circuit_breaker
    calls = await rt.db.calls(body["metadata"]["name"], breaker.window_start(current, policy, now))
    decided = breaker.decide(current, policy, calls, now, probes_to_close=rt.settings.half_open_probes_to_close)
    if breaker.changed(current, decided):
        _circuit_event(rt, body, decided)
    return decided, calls


def _circuit_event(rt: Runtime, body: kopf.Body, circuit: breaker.Circuit) -> None:
    name = body["metadata"]["name"]
    kind = "Warning" if circuit.state is CircuitState.OPEN else "Normal"
    message = f"circuit {breaker.CRD_SPELLING[circuit.state]}: {circuit.message}"
    kopf.event(body, type=kind, reason=circuit.reason, message=message)
    rt.metrics.circuit_transitions.labels(name, circuit.state.value, circuit.reason).inc()
    log.warning(
        "circuit transition",
        extra={"fields": {"provider": name, "state": circuit.state.value, "reason": circuit.reason}},
    )


def decide_replicas(
    rt: Runtime,
    body: kopf.Body,
    spec: ChannelProviderSpec,
    memory: ProviderMemory,
    load: scaling.Load,
    *,
    now: dt.datetime,
) -> int | None:
    """Replicas to apply; None when another autoscaler owns them (managedBy External)."""
    if spec.scaling.replicas.managed_by == "External":
        return None
    current = memory.replicas if memory.replicas is not None else scaling.initial_replicas(spec.scaling)
    last = dt.datetime.fromisoformat(memory.last_scale.replace("Z", "+00:00")) if memory.last_scale else None
    decision = scaling.next_replicas(current, load, spec.scaling, rt.damping, last_change=last, now=now)
    if decision.changed and memory.replicas is not None:
        message = f"replicas {current} -> {decision.replicas} (queue depth {load.depth}, {load.in_flight} in flight)"
        kopf.event(body, type="Normal", reason=decision.reason, message=message)
    if decision.changed:
        memory.last_scale = timestamp(now)
    return decision.replicas


async def publish_control(rt: Runtime, body: kopf.Body, desired: ProviderControl, before: ProviderControl) -> None:
    """Write the row when it differs from the desired one; a hand edit is drift: reported, reverted."""
    actual = await rt.db.control_row(desired.provider)
    if actual is not None and (actual.observed_generation or 0) > (desired.observed_generation or 0):
        return  # written for a newer spec than this (stale) body
    if actual == desired:
        return
    if actual is not None and actual.observed_generation == before.observed_generation:
        drift = control.differences(actual, before)
        if drift:
            message = f"provider_control edited outside the operator, reverted: {control.describe(drift)}"
            kopf.event(body, type="Warning", reason="ControlRowDrift", message=message)
            rt.metrics.drift.labels(desired.provider, "provider_control").inc()
    await rt.db.write_control(desired)


async def reconcile(rt: Runtime, body: kopf.Body) -> dict[str, Any]:
    """One full pass; returns the status to write."""
    meta = body["metadata"]
    name, generation = meta["name"], int(meta.get("generation") or 0)
    spec = ChannelProviderSpec.of(body["spec"])
    memory = rt.provider(meta["uid"])
    async with memory.lock:
        if being_deleted(body, memory):
            return dict(body.get("status") or {})
        remember(memory, body.get("status") or {}, await rt.db.control_row(name))
        now = await rt.db.now()
        refused = admission.refusal(spec, meta["namespace"], rt.settings) or env_refusal(name, spec, rt.settings)
        if refused is not None:
            return refuse(rt, body, memory, refused, generation=generation, now=now)
        before = control.desired_row(
            name, spec, memory.circuit or breaker.initial(now), memory.batch_size or 1, generation
        )
        circuit, calls = await decide_circuit(rt, body, spec, memory, now)
        load = await rt.db.load(spec.channel)
        replicas = decide_replicas(rt, body, spec, memory, load, now=now)
        batch = scaling.next_batch(memory.batch_size, load.depth, replicas or 1, spec.scaling, rt.damping)
        desired = control.desired_row(name, spec, circuit, batch, generation)
        await publish_control(rt, body, desired, before)
        memory.circuit, memory.batch_size, memory.replicas, memory.row = circuit, batch, replicas, desired
        deployment = await workloads.converge(rt, body, memory, spec, replicas)
        rollout = await workloads.rollout(rt, deployment)
        observed = _observed(
            circuit, calls, load, batch=batch, replicas=replicas, deployment=deployment, rollout=rollout
        )
        memory.generation, memory.enabled = generation, spec.enabled
        memory.applied.set()
        _export(rt, name, spec, observed)
        status = _status(memory, observed, generation=generation, enabled=spec.enabled, now=now, error=None)
        for key in WRITTEN_UNDER_LOCK:
            status.pop(key)
        await publish_conditions(rt, meta, memory, observed.ready_replicas, body.get("status") or {})
        return status


async def follow_workers(rt: Runtime, body: kopf.Body, stopped: kopf.DaemonStopped) -> None:
    """Watch the ChannelProvider's worker Deployment for as long as the ChannelProvider exists; each
    change of it brings Ready up to date (deployment_changed). Survives every error (API server
    restarts, RBAC not yet bound, an expired watch): it logs, waits a little longer each time (at most
    a minute) and watches again. Idle until this process has applied the provider (kopf cancels it
    on deletion)."""
    meta = body["metadata"]
    deployment_name, _ = workload_names(meta["name"])
    memory = rt.provider(meta["uid"])
    pause = rt.settings.reconcile_interval_seconds
    await memory.applied.wait()
    while not stopped:
        try:
            async for _ in rt.kube.watch("apps/v1", "Deployment", meta["namespace"], deployment_name):
                await deployment_changed(rt, meta, memory)
                pause = rt.settings.reconcile_interval_seconds
                if stopped:
                    return
        except Exception as error:  # any failure: watch again later
            log.warning(
                "watching the worker Deployment failed",
                extra={"fields": {"provider": meta["name"], "error": f"{type(error).__name__}: {error}"[:500]}},
            )
            await stopped.wait(pause)
            pause = min(pause * 2, 60.0)


async def deployment_changed(rt: Runtime, meta: Mapping[str, Any], memory: ProviderMemory) -> None:
    """The worker Deployment changed: bring Ready (and readyReplicas) up to date now rather than at
    the next timer tick. The Deployment is read again under the provider's lock, so whichever of this
    and a reconcile writes last wrote from the latest state. Nothing to do while the spec is refused
    or failing: Ready already says why."""
    async with memory.lock:
        if memory.deleted or memory.conditions is None or memory.generation is None:
            return
        applied = find(memory.conditions, "Reconciled")
        if applied is None or applied.get("status") != "True":
            return
        deployment_name, _ = workload_names(meta["name"])
        deployment = await rt.kube.get("apps/v1", "Deployment", meta["namespace"], deployment_name)
        if deployment is None:
            return  # deleted by hand: the next reconcile recreates it and reports the drift
        rollout = await workloads.rollout(rt, deployment)
        condition = provider_status.ready(None, memory.enabled, rollout)
        memory.conditions = set_all(memory.conditions, [condition], memory.generation, dt.datetime.now(dt.UTC))
        ready_replicas = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        await publish_conditions(rt, meta, memory, ready_replicas, {})


async def publish_conditions(
    rt: Runtime, meta: Mapping[str, Any], memory: ProviderMemory, ready_replicas: int, seen: Mapping[str, Any]
) -> None:
    """Write conditions and readyReplicas when they differ from what was last written (or, after a
    restart or a failure written through kopf, from `seen`, the status the handler was given).

    Always under the provider's lock, by the reconcile and by the Deployment watch alike: the last
    writer wrote from the freshest Deployment, and kopf's own patch, applied after the handler has
    released the lock, never carries these two fields."""
    assert memory.conditions is not None
    wanted = (memory.conditions, ready_replicas)
    before = memory.written or (list(seen.get("conditions") or []), seen.get("readyReplicas"))
    if wanted != before:
        status = {"conditions": memory.conditions, "readyReplicas": ready_replicas}
        await rt.kube.patch_status(f"{GROUP}/{VERSION}", PLURAL, meta["namespace"], meta["name"], status)
    memory.written = ([dict(c) for c in memory.conditions], ready_replicas)
    rt.metrics.ready(meta["namespace"], meta["name"], {"conditions": memory.conditions})


async def forget(rt: Runtime, body: kopf.Body) -> None:
    """Deletion: the control row goes, after any reconcile in flight has finished (it holds the lock),
    so a timer tick that raced the deletion cannot write the row back."""
    meta = body["metadata"]
    memory = rt.provider(meta["uid"])
    async with memory.lock:
        memory.deleted = True
        await rt.db.delete_control(meta["name"])
    rt.providers.pop(meta["uid"], None)
    rt.metrics.forget(meta["namespace"], meta["name"])


def _observed(
    circuit: breaker.Circuit,
    calls: breaker.Calls,
    load: scaling.Load,
    *,
    batch: int,
    replicas: int | None,
    deployment: Mapping[str, Any],
    rollout: provider_status.Rollout,
) -> provider_status.Observed:
    live_status = deployment.get("status") or {}
    live_replicas = (deployment.get("spec") or {}).get("replicas")
    return provider_status.Observed(
        circuit=circuit,
        calls=calls,
        queue_depth=load.depth,
        batch_size=batch,
        replicas=replicas if replicas is not None else live_replicas,
        ready_replicas=int(live_status.get("readyReplicas") or 0),
        deployment_conditions=tuple(live_status.get("conditions") or ()),
        rollout=rollout,
    )


def _export(rt: Runtime, name: str, spec: ChannelProviderSpec, observed: provider_status.Observed) -> None:
    m = rt.metrics
    m.circuit(name, observed.circuit.state)
    m.queue_depth.labels(spec.channel).set(observed.queue_depth or 0)
    m.batch_size.labels(name).set(observed.batch_size)
    if observed.replicas is not None:
        m.replicas.labels(name).set(observed.replicas)
    if observed.calls is not None and observed.calls.success_rate is not None:
        m.success_rate.labels(name).set(observed.calls.success_rate)


def _status(
    memory: ProviderMemory,
    observed: provider_status.Observed,
    *,
    generation: int,
    enabled: bool,
    now: dt.datetime,
    error: str | None,
) -> dict[str, Any]:
    memory.conditions = set_all(
        memory.conditions or [], provider_status.conditions(observed, error, enabled), generation, now
    )
    status = provider_status.figures(observed, now)
    status.update(observedGeneration=generation, conditions=memory.conditions, lastScaleTime=memory.last_scale)
    return status


def failed_status(
    memory: ProviderMemory, generation: int, error: str, now: dt.datetime, reason: str = "ReconcileFailed"
) -> dict[str, Any]:
    """Reconciled=False and Ready=False with the reason; the other conditions and figures stay as last
    written."""
    failure = [provider_status.reconciled(error, reason=reason), provider_status.ready(error, True, reason=reason)]
    memory.conditions = set_all(memory.conditions or [], failure, generation, now)
    memory.written = None  # kopf writes these: the next success compares with the status it is given
    return {"conditions": memory.conditions}


def refuse(
    rt: Runtime,
    body: kopf.Body,
    memory: ProviderMemory,
    refused: admission.Refusal,
    *,
    generation: int,
    now: dt.datetime,
) -> dict[str, Any]:
    """Apply nothing; say why in the status and once per spec generation as a Warning Event."""
    name = body["metadata"]["name"]
    if memory.refused != (generation, refused.reason):
        memory.refused = (generation, refused.reason)
        kopf.event(body, type="Warning", reason=refused.reason, message=refused.message)
        log.warning(
            "ChannelProvider refused",
            extra={"fields": {"provider": name, "reason": refused.reason, "message": refused.message}},
        )
    return {"observedGeneration": generation, **failed_status(memory, generation, refused.message, now, refused.reason)}
