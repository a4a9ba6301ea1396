"""kopf registration: thin handlers that call the reconcilers and write their status.

Everything is registered into an explicit registry (no import-time side effects), with intervals
taken from the validated settings.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from outbound_operator.handlers import channelprovider, quotapolicy
from outbound_operator.handlers.context import Runtime

GROUP = "messaging.outbound.dev"
Reconciler = Callable[[Runtime, kopf.Body], Awaitable[dict[str, Any]]]
log = logging.getLogger("outbound_operator")


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Only what changed (observedAt alone is no change): an idle provider causes no writes."""
    changed = {k: v for k, v in new.items() if old.get(k) != v and not (v is None and k not in old)}
    changed.pop("observedAt", None)
    if changed and "observedAt" in new:
        changed["observedAt"] = new["observedAt"]
    return changed


async def run(rt: Runtime, kind: str, reconciler: Reconciler, body: kopf.Body, patch: kopf.Patch) -> None:
    old = dict(body.get("status") or {})
    with rt.metrics.reconcile_seconds.labels(kind).time():
        try:
            new = await reconciler(rt, body)
        except (kopf.TemporaryError, kopf.PermanentError):
            raise
        except Exception as error:
            rt.metrics.reconciles.labels(kind, "error").inc()
            _report_failure(rt, kind, body, patch, error)
            raise kopf.TemporaryError(f"reconcile failed: {error}", delay=5) from error
    rt.metrics.reconciles.labels(kind, "ok").inc()
    if kind == "ChannelProvider":
        rt.metrics.ready(body["metadata"]["namespace"], body["metadata"]["name"], new)
    for key, value in status_patch(old, new).items():
        patch.status[key] = value


def _report_failure(rt: Runtime, kind: str, body: kopf.Body, patch: kopf.Patch, error: Exception) -> None:
    meta = body["metadata"]
    message = f"{type(error).__name__}: {error}"[:1000]
    log.error("reconcile failed", extra={"fields": {"kind": kind, "name": meta["name"], "error": message}})
    kopf.event(body, type="Warning", reason="ReconcileFailed", message=message)
    if kind == "ChannelProvider":
        memory = rt.provider(meta["uid"])
        now = dt.datetime.now(dt.UTC)
        generation = int(meta.get("generation") or 0)
        failed = channelprovider.failed_status(memory, generation, message, now)
        patch.status["conditions"] = failed["conditions"]
        rt.metrics.ready(meta["namespace"], meta["name"], failed)


def register_channel_providers(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    resource = (GROUP, "v1alpha1", "channelproviders")

    async def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        await run(rt, "ChannelProvider", channelprovider.reconcile, body, patch)

    async def delete(body: kopf.Body, **_: Any) -> None:
        await channelprovider.forget(rt, body)

    kopf.on.create(*resource, registry=registry, id="create")(reconcile)
    kopf.on.resume(*resource, registry=registry, id="resume")(reconcile)
    kopf.on.update(*resource, registry=registry, id="update", field="spec")(reconcile)
    kopf.timer(*resource, registry=registry, id="observe", interval=rt.settings.reconcile_interval_seconds)(reconcile)
    kopf.on.delete(*resource, registry=registry, id="cleanup")(delete)

    async def workers(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        await channelprovider.follow_workers(rt, body, stopped)

    # The worker Deployment's status (available pods, rollouts) moves Ready without waiting for the
    # timer: one watch of that one Deployment per ChannelProvider, in its own namespace (where the
    # Role grants it), so a cluster-wide operator needs no cluster-wide grant on Deployments.
    kopf.daemon(*resource, registry=registry, id="workers", cancellation_timeout=1.0)(workers)


def register_quota_policies(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    resource = (GROUP, "v1alpha1", "quotapolicies")

    async def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        await run(rt, "QuotaPolicy", quotapolicy.reconcile, body, patch)

    async def delete(body: kopf.Body, **_: Any) -> None:
        await quotapolicy.forget(rt, body)

    kopf.on.create(*resource, registry=registry, id="create")(reconcile)
    kopf.on.resume(*resource, registry=registry, id="resume")(reconcile)
    kopf.on.update(*resource, registry=registry, id="update", field="spec")(reconcile)
    kopf.timer(*resource, registry=registry, id="observe", interval=rt.settings.reconcile_interval_seconds)(reconcile)
    kopf.on.delete(*resource, registry=registry, id="cleanup")(delete)
