"""Converge a ChannelProvider's ConfigMap and Deployment by server-side apply, and report drift.

Each applied object carries the hash of what we applied (annotation). If the live object still
carries that hash and its generation (Deployment) or resourceVersion (ConfigMap) is the one our
last apply produced, nothing changed and no request is made. Otherwise we apply; when our desire
did not change (same hash) but the apply changed the object, someone edited fields we own:
that is drift, corrected by the apply and reported as an Event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import kopf

from outbound_operator.handlers.context import ProviderMemory, Runtime
from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_operator.reconcile.status import Rollout
from outbound_operator.reconcile.workload import GROUP, workload

APPLIED_HASH = f"{GROUP}/applied-hash"
VERSION_FIELD = {"Deployment": "generation", "ConfigMap": "resourceVersion", "PodDisruptionBudget": "generation"}


def applied_hash(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def stamped(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with the hash of its own content as an annotation."""
    digest = applied_hash(obj)
    obj.setdefault("metadata", {}).setdefault("annotations", {})[APPLIED_HASH] = digest
    return obj


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get(VERSION_FIELD[obj["kind"]]))


def _hash_of(obj: Mapping[str, Any] | None) -> str | None:
    if obj is None:
        return None
    return str((obj["metadata"].get("annotations") or {}).get(APPLIED_HASH)) or None


async def converge_object(rt: Runtime, owner: kopf.Body, obj: dict[str, Any], memory: ProviderMemory) -> dict[str, Any]:
    kind, meta = obj["kind"], obj["metadata"]
    live = await rt.kube.get(obj["apiVersion"], kind, meta["namespace"], meta["name"])
    ours = _hash_of(obj)
    if live is not None and _hash_of(live) == ours and memory.workload_versions.get(kind) == _version(live):
        return live
    result = await rt.kube.apply(obj)
    memory.workload_versions[kind] = _version(result)
    if live is None and kind in memory.seen_kinds:
        _drift(rt, owner, kind, meta["name"], "deleted by hand, recreated")
    elif live is not None and _hash_of(live) == ours and _version(result) != _version(live):
        _drift(rt, owner, kind, meta["name"], "edited outside the operator, reverted")
    memory.seen_kinds.add(kind)
    return result


def _drift(rt: Runtime, owner: kopf.Body, kind: str, name: str, what: str) -> None:
    kopf.event(owner, type="Warning", reason=f"{kind}Drift", message=f"{kind} {name} {what}")
    rt.metrics.drift.labels(owner["metadata"]["name"], kind).inc()


async def converge(
    rt: Runtime, owner: kopf.Body, memory: ProviderMemory, spec: ChannelProviderSpec, replicas: int | None
) -> dict[str, Any]:
    """Apply ConfigMap, Deployment, then its PodDisruptionBudget (all owned by the ChannelProvider);
    returns the live Deployment."""
    wanted = workload(owner["metadata"]["name"], spec, rt.settings, replicas)
    live: dict[str, dict[str, Any]] = {}
    for obj in (wanted.config_map, wanted.deployment, wanted.disruption_budget):
        kopf.adopt(obj, owner=owner)
        live[obj["kind"]] = await converge_object(rt, owner, stamped(obj), memory)
    return live["Deployment"]


def owner(deployment: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the ChannelProvider that owns a worker Deployment, if one does."""
    for ref in deployment["metadata"].get("ownerReferences") or ():
        if ref.get("kind") == "ChannelProvider" and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return str(ref["name"]), str(ref["uid"])
    return None


def unschedulable(pods: list[dict[str, Any]]) -> str:
    """The scheduler's message on a pod it could not place (the first one), or ""."""
    for pod in pods:
        for condition in (pod.get("status") or {}).get("conditions") or ():
            if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return str(condition.get("message") or "no node fits")
    return ""


# The kubelet's reasons for a container that waits because it cannot get its image.
IMAGE_PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "RegistryUnavailable"}
)


def image_pull_failure(pods: list[dict[str, Any]]) -> str:
    """The kubelet's reason and message on a container that cannot pull its image (the first), or ""."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or ():
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL_FAILURES:
                message = waiting.get("message")
                return f"{waiting['reason']}: {message}" if message else str(waiting["reason"])
    return ""


async def rollout(rt: Runtime, deployment: Mapping[str, Any]) -> Rollout:
    """The Deployment's rollout; while it is not done, why its pods wait, when they say so: the
    scheduler's reason, the kubelet's image pull failure (one list of the Deployment's pods, made
    only then)."""
    seen = Rollout.of(deployment)
    if seen.done:
        return seen
    selector = (deployment.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
    pods = await rt.kube.pods(deployment["metadata"]["namespace"], selector)
    return Rollout.of(deployment, unschedulable(pods), image_pull_failure(pods))
