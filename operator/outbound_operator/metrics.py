"""The operator's own Prometheus metrics (served on OUTBOUND_OPERATOR_METRICS_PORT at /metrics)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from outbound_sender.domain import CircuitState

KINDS = ("ChannelProvider", "QuotaPolicy")
RESULTS = ("ok", "error")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "outbound_operator_reconcile_total",
            "Reconciles by kind and result.",
            ["kind", "result"],
            registry=r,
        )
        # Every series exists from start-up at 0: rate() sees the first error, and a running operator
        # always exports this metric (the OutboundOperatorDown alert is its absence).
        for kind in KINDS:
            for result in RESULTS:
                self.reconciles.labels(kind, result)
        self.reconcile_seconds = Histogram(
            "outbound_operator_reconcile_duration_seconds", "Duration of one reconcile.", ["kind"], registry=r
        )
        self.circuit_state = Gauge(
            "outbound_operator_circuit_state",
            "Circuit per provider: 0 closed, 1 half-open, 2 open.",
            ["provider"],
            registry=r,
        )
        self.circuit_transitions = Counter(
            "outbound_operator_circuit_transitions_total",
            "Circuit transitions.",
            ["provider", "to", "reason"],
            registry=r,
        )
        self.success_rate = Gauge(
            "outbound_operator_provider_success_rate_percent",
            "Success rate within the window.",
            ["provider"],
            registry=r,
        )
        self.queue_depth = Gauge("outbound_operator_queue_depth", "QUEUED per channel.", ["channel"], registry=r)
        self.replicas = Gauge("outbound_operator_desired_replicas", "Replicas requested.", ["provider"], registry=r)
        self.batch_size = Gauge("outbound_operator_batch_size", "Batch size published.", ["provider"], registry=r)
        self.drift = Counter(
            "outbound_operator_drift_corrections_total", "Hand edits reverted.", ["provider", "object"], registry=r
        )
        self.provider_ready = Gauge(
            "outbound_operator_provider_ready",
            "1 while a ChannelProvider's Ready condition is True, 0 while False (this replica's last reconcile).",
            ["namespace", "provider"],
            registry=r,
        )
        self.quota_used = Gauge("outbound_operator_quota_used", "WhatsApp quota used.", ["org_id"], registry=r)
        self.quota_limit = Gauge("outbound_operator_quota_limit", "WhatsApp quota in force.", ["org_id"], registry=r)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)

    def ready(self, namespace: str, provider: str, status: Mapping[str, Any]) -> None:
        """Export the Ready condition of a ChannelProvider status (as the reconcile wrote it)."""
        ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
        if ready is not None:
            self.provider_ready.labels(namespace, provider).set(1 if ready.get("status") == "True" else 0)

    def forget(self, namespace: str, provider: str) -> None:
        with contextlib.suppress(KeyError):  # never reconciled by this replica
            self.provider_ready.remove(namespace, provider)

    def circuit(self, provider: str, state: CircuitState) -> None:
        self.circuit_state.labels(provider).set(state.gauge_value)
