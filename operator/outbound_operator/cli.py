"""`outbound-operator` (or `python -m outbound_operator`): run the operator.

    outbound-operator                      watch the whole cluster, peering for HA (priority from settings)
    outbound-operator --namespace ns1,ns2  watch these namespaces only
    outbound-operator --standalone         no peering (tests, a single replica)

Settings come from the environment (OUTBOUND_OPERATOR_*), validated before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

import kopf

from outbound_operator.db import Database
from outbound_operator.handlers import GROUP, register_channel_providers, register_quota_policies
from outbound_operator.handlers.context import Runtime
from outbound_operator.kube import Kube, in_cluster
from outbound_operator.metrics import OperatorMetrics
from outbound_operator.settings import OperatorSettings, load_settings
from outbound_sender.errors import ConfigError
from outbound_sender.logs import setup_logging

log = logging.getLogger("outbound_operator")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="outbound-operator", description=__doc__.splitlines()[0])
    p.add_argument("--namespace", "-n", action="append", default=[], help="namespace(s) to watch (repeatable, csv)")
    p.add_argument("--standalone", action="store_true", default=None, help="no peering (tests, one replica)")
    p.add_argument("--priority", type=int, default=None, help="peering priority (highest acts)")
    p.add_argument("--peering", default=None, help="KopfPeering name shared by the replicas")
    return p


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """Where kopf keeps its state, and what it may touch (least privilege)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    settings.posting.level = logging.WARNING  # kopf's own per-handler chatter; our Events use kopf.event
    settings.scanning.disabled = True  # no list/watch of CRDs and namespaces needed
    # Peering: kopf.operator() set standalone/priority/name; a peering name makes the peering object
    # mandatory (streams pause until it exists), which is what HA wants and standalone must not get.
    settings.peering.mandatory = not ours.standalone
    settings.batching.batch_window = 0.05  # a spec change reaches the handler within ~50 ms
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Deletion waits for the object's timer to stop. A tick in the middle of its reconcile cannot stop
    # at once; kopf's default would then look again only after 60 s, holding the finalizer (and
    # `kubectl delete`) that long. Wait up to 2 s for the tick to finish, then look every second.
    settings.background.instant_exit_timeout = 2.0
    settings.background.cancellation_polling = 1.0


def build_registry(rt: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, rt.settings)

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info = in_cluster(kopf.login_with_service_account(**kwargs)) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None:
            await rt.kube.configure(info)
        return info

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await rt.kube.aclose()

    register_channel_providers(registry, rt)
    register_quota_policies(registry, rt)
    return registry


async def serve(settings: OperatorSettings) -> None:
    db = await Database.connect(settings.database_url)
    rt = Runtime(settings=settings, db=db, kube=Kube(), metrics=OperatorMetrics())
    rt.metrics.serve(settings.metrics_port)
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    log.info("outbound-operator starting", extra={"fields": _describe(settings)})
    try:
        await kopf.operator(
            registry=build_registry(rt),
            standalone=settings.standalone,
            priority=settings.priority,
            peering_name=None if settings.standalone else settings.peering_name,
            namespaces=settings.namespaces,
            clusterwide=not settings.namespaces,
            liveness_endpoint=liveness,
        )
    finally:
        await db.close()


def _describe(settings: OperatorSettings) -> dict[str, object]:
    return {
        "namespaces": ",".join(settings.namespaces) or "*",
        "standalone": settings.standalone,
        "priority": settings.priority,
        "intervalSeconds": settings.reconcile_interval_seconds,
        "metricsPort": settings.metrics_port,
    }


def overrides(args: argparse.Namespace) -> dict[str, object]:
    values: dict[str, object] = {}
    if args.namespace:
        values["namespaces"] = ",".join(args.namespace)
    if args.standalone:
        values["standalone"] = True
    if args.priority is not None:
        values["priority"] = args.priority
    if args.peering:
        values["peering_name"] = args.peering
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings(**overrides(args))
    except ConfigError as error:
        print(f"outbound-operator: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
