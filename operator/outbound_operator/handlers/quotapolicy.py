"""QuotaPolicy: the organisation's whatsapp_quota_policy row, the ledger's limit, usage in status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import kopf

from outbound_operator.handlers.context import QuotaMemory, Runtime, being_deleted
from outbound_operator.reconcile import quota
from outbound_operator.reconcile.conditions import Condition, find, set_all, transitions
from outbound_operator.reconcile.spec import QuotaPolicySpec

GROUP, VERSION, PLURAL = "messaging.outbound.dev", "v1alpha1", "quotapolicies"


def remember(memory: QuotaMemory, status: Mapping[str, Any]) -> None:
    if memory.conditions is not None:
        return
    memory.conditions = [dict(c) for c in status.get("conditions") or []]
    memory.generation = status.get("observedGeneration")
    override = find(memory.conditions, "ManualOverride")
    if override is not None and override.get("status") == "True":
        memory.override_reported = status.get("effectiveLimit")


async def settle_limit(
    rt: Runtime, body: kopf.Body, spec: QuotaPolicySpec, memory: QuotaMemory, generation: int
) -> tuple[quota.LimitAction, quota.Ledger]:
    """Bring the ledger's quota_limit to the policy, except a lower value set by hand."""
    ledger = await rt.db.ledger(spec.org)
    action = quota.limit_action(spec, ledger, spec_changed=memory.generation != generation)
    if action.writes:
        await rt.db.set_ledger_limit(spec.org, action.limit, spec.reset_period_seconds)
        ledger = await rt.db.ledger(spec.org)
    if action.kind == "Drift":
        message = f"whatsapp_rate_limit.quota_limit above the policy's {action.limit} for {spec.org}: restored"
        kopf.event(body, type="Warning", reason="QuotaLimitDrift", message=message)
        rt.metrics.drift.labels(body["metadata"]["name"], "whatsapp_rate_limit").inc()
    if action.kind == "ManualOverride" and memory.override_reported != action.limit:
        message = f"quota_limit {action.limit} for {spec.org} was set by hand (policy {quota.policy_limit(spec)}): kept"
        kopf.event(body, type="Warning", reason="ManualQuotaOverride", message=message)
        memory.override_reported = action.limit
    if action.kind != "ManualOverride":
        memory.override_reported = None
    assert ledger is not None
    return action, ledger


def _warn_on_thresholds(body: kopf.Body, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    for condition in transitions(before, after):
        if condition.get("type") == "QuotaWarning" and condition.get("status") == "True":
            kopf.event(body, type="Warning", reason=str(condition["reason"]), message=str(condition["message"]))


async def reconcile(rt: Runtime, body: kopf.Body) -> dict[str, Any]:
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    spec = QuotaPolicySpec.of(body["spec"])
    memory = rt.quota(meta["uid"])
    async with memory.lock:
        if being_deleted(body, memory):
            return dict(body.get("status") or {})
        remember(memory, body.get("status") or {})
        await rt.db.write_quota_policy(quota.policy_row(spec, generation))
        action, ledger = await settle_limit(rt, body, spec, memory, generation)
        memory.generation = generation
        now = await rt.db.now()
        return _status(rt, body, spec, memory, action=action, ledger=ledger, generation=generation, now=now)


def _status(
    rt: Runtime,
    body: kopf.Body,
    spec: QuotaPolicySpec,
    memory: QuotaMemory,
    *,
    action: quota.LimitAction,
    ledger: quota.Ledger,
    generation: int,
    now: dt.datetime,
) -> dict[str, Any]:
    figures = quota.figures(ledger, now)
    ready = Condition("Ready", True, "Reconciled", f"quota policy for {spec.org} published")
    new = [
        ready,
        quota.warning(figures["used"], ledger.limit, spec.alert_thresholds),
        quota.override_condition(action, spec),
    ]
    before = memory.conditions or []
    memory.conditions = set_all(before, new, generation, now)
    _warn_on_thresholds(body, before, memory.conditions)
    rt.metrics.quota_used.labels(spec.org).set(figures["used"])
    rt.metrics.quota_limit.labels(spec.org).set(ledger.limit)
    limit = None if ledger.limit >= quota.UNLIMITED else ledger.limit
    return {**figures, "effectiveLimit": limit, "observedGeneration": generation, "conditions": memory.conditions}


async def forget(rt: Runtime, body: kopf.Body) -> None:
    """Deletion: the policy row goes; the ledger (usage history) stays for the runbook.

    Taken under the object's lock, after any reconcile in flight, so a timer tick that raced the
    deletion cannot write the policy back.
    """
    spec = QuotaPolicySpec.of(body["spec"])
    memory = rt.quota(body["metadata"]["uid"])
    async with memory.lock:
        memory.deleted = True
        await rt.db.delete_quota_policy(spec.org)
    rt.quotas.pop(body["metadata"]["uid"], None)
