"""Prometheus metrics, with the runbook's names. Label values are bounded: no recipients, no ids.

Two kinds live on one registry:
- process metrics (counters, histograms, the worker heartbeat): each pod counts its own work, so
  queries `sum()` them across pods;
- database-derived gauges (queue depth, dead-letter queue size, WhatsApp quota, stuck messages):
  the same global value in every pod (observability/gauges.py refreshes them from PostgreSQL), so
  queries aggregate them with `max()`. docs/observability.md explains why.

Every counter series whose label values are known in advance exists at zero from the start
(channels x normalized error codes, outcomes; the configured providers' and the registry's webhook
sources' series when the dispatcher or the webhook router is built): rate() and increase() need a
sample before the first event, or the first burst of a new error code reads as no increase at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from outbound_sender.domain import Channel, CircuitState, ErrorCode, Outcome
from outbound_sender.observability.gauges import DatabaseGauges

# Delivery latency (enqueue -> provider accepted): buckets around the runbook's 30 s / 60 s thresholds.
# Label values the worker, the webhooks and the quota gate can produce, created at zero.
WEBHOOK_OUTCOMES = ("recorded", "duplicate", "unmatched", "rejected", "resolved_ambiguous")
RECOVERED_STATUSES = ("QUEUED", "FAILED")
REROUTES = ((Channel.WHATSAPP, Channel.SMS),)  # the quota gate's only re-route (quota/gate.py)
NO_PROVIDER = "none"  # provider label of a failure before any provider was chosen
NO_PROVIDER_CODES = (ErrorCode.NO_PROVIDER, ErrorCode.TEMPORARY_ERROR)
CALLBACK_EVENTS = ("SENT", "DELIVERED", "READ", "FAILED")
CALLBACK_REASONS = ("http", "network", "refused_address")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 20, 30)
REFRESH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

Labelled = TypeVar("Labelled", bound=MetricWrapperBase)


class DatabaseMetrics:
    """The database-derived gauges and the health of their refresh (observability/refresher.py): one
    refresher per pod. A pod of several worker processes (worker_pod.py) exports these from its
    supervisor, beside its children's process metrics."""

    NAMES = (
        "outbound_metrics_last_refresh_timestamp_seconds",
        "outbound_metrics_refresh_duration_seconds",
        "outbound_metrics_refresh_errors",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.refresh_timestamp = Gauge(
            "outbound_metrics_last_refresh_timestamp_seconds",
            "Unix time of the last successful refresh of the database-derived gauges",
            registry=r,
            multiprocess_mode="max",
        )
        self.refresh_duration = Histogram(
            "outbound_metrics_refresh_duration_seconds",
            "Duration of the query behind the database-derived gauges",
            buckets=REFRESH_BUCKETS,
            registry=r,
        )
        self.refresh_errors = Counter(
            "outbound_metrics_refresh_errors", "Failed refreshes of the database-derived gauges", registry=r
        )
        self.database = DatabaseGauges()
        self.registry.register(self.database)


class Metrics(DatabaseMetrics):
    """All metrics of a sender process, on one registry (tests create their own).

    Each gauge names how a pod of several worker processes (prometheus_client's multiprocess mode,
    worker_pod.py) combines its processes' values into the pod's one series: in-flight calls add up,
    the heartbeat is the stalest live process's, a circuit or fallback shows its worst live state."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        self._outcomes(self.registry)
        self._timings(self.registry)
        self._worker(self.registry)
        self._providers(self.registry)
        self._callbacks(self.registry)
        self._known_series_at_zero()

    def child(self, metric: Labelled, *values: str) -> Labelled:
        """`metric.labels(*values)`, remembered. labels() takes a lock and checks its values on every
        call; the worker's hot path calls it four times per message (no series is ever removed)."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found  # type: ignore[return-value]  # the child of a `Labelled` is a `Labelled`

    def _known_series_at_zero(self) -> None:
        for channel in Channel:
            c = channel.value
            self.claimed.labels(c)
            self.latency.labels(c)
            for code in ErrorCode:
                self.retries.labels(c, code.value)
                self.dead_lettered.labels(c, code.value)
            for code in NO_PROVIDER_CODES:
                self.send_failure.labels(c, NO_PROVIDER, code.value)
            for outcome in Outcome:
                self.superseded.labels(c, outcome.value)
            for status in RECOVERED_STATUSES:
                self.recovered.labels(c, status)
        for source, target in REROUTES:
            self.rerouted.labels(source.value, target.value)

    def _outcomes(self, r: CollectorRegistry) -> None:
        self.send_success = Counter(
            "outbound_message_send_success",
            "Messages a provider accepted",
            ["channel", "provider"],
            registry=r,
        )
        self.send_failure = Counter(
            "outbound_message_send_failure",
            "Failed provider calls (retried or final)",
            ["channel", "provider", "error_code"],
            registry=r,
        )
        self.retries = Counter("outbound_message_retry", "Retries scheduled", ["channel", "error_code"], registry=r)
        self.dead_lettered = Counter(
            "outbound_message_dead_lettered",
            "Messages that ended FAILED",
            ["channel", "error_code"],
            registry=r,
        )
        self.ambiguous = Counter(
            "outbound_message_ambiguous_send",
            "Calls that got no answer after the request was sent (the provider may have accepted)",
            ["channel", "provider"],
            registry=r,
        )
        self.superseded = Counter(
            "outbound_message_superseded_result",
            "Results recorded after the message's lease had moved on (possible duplicate when sent)",
            ["channel", "outcome"],
            registry=r,
        )
        self.recovered = Counter(
            "outbound_message_lease_recovered", "Expired leases put back", ["channel", "status"], registry=r
        )
        self.deferred = Counter(
            "outbound_message_deferred",
            "Messages put back unsent by the worker's own decision (every circuit open, quota hold): not failures",
            ["channel", "reason"],
            registry=r,
        )

    def _timings(self, r: CollectorRegistry) -> None:
        self.latency = Histogram(
            "outbound_message_delivery_latency_seconds",
            "Enqueue (or scheduled time) to provider acceptance",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.provider_duration = Histogram(
            "outbound_provider_request_duration_seconds",
            "Provider API call duration",
            ["provider", "channel", "outcome"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.circuit_state = Gauge(
            "outbound_provider_circuit_state",
            "Circuit breaker per provider and channel: 0 closed, 1 half-open, 2 open",
            ["provider", "channel"],
            registry=r,
            multiprocess_mode="livemax",
        )

    def _worker(self, r: CollectorRegistry) -> None:
        self.in_flight = Gauge(
            "outbound_worker_in_flight", "Provider calls in progress", registry=r, multiprocess_mode="livesum"
        )
        self.heartbeat = Gauge(
            "outbound_worker_last_poll_timestamp_seconds",
            "Unix time of the last successful claim query (0: this process has not polled)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.claimed = Counter("outbound_worker_claimed", "Messages claimed", ["channel"], registry=r)

    def _providers(self, r: CollectorRegistry) -> None:
        self.failover = Counter(
            "outbound_provider_failover",
            "Sends routed past a provider whose circuit was open",
            ["channel", "from_provider", "to_provider"],
            registry=r,
        )
        self.rerouted = Counter(
            "outbound_message_rerouted",
            "Messages moved to their organisation's fallback channel (WhatsApp quota near its limit)",
            ["from_channel", "to_channel"],
            registry=r,
        )
        self.ratelimit_fallback = Gauge(
            "outbound_ratelimit_fallback_active",
            "1 while WhatsApp per-second limits run in process, stricter (Redis unreachable or refusing the script)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.webhook_events = Counter(
            "outbound_webhook_events",
            "Delivery webhook events by outcome (recorded, duplicate, unmatched, rejected, resolved_ambiguous)",
            ["provider", "outcome"],
            registry=r,
        )

    def _callbacks(self, r: CollectorRegistry) -> None:
        """The delivery-callback dispatcher (callbacks/dispatcher.py, docs/callbacks.md)."""
        self.callback_delivered = Counter(
            "outbound_callback_delivered",
            "Callbacks the client's endpoint accepted (2xx), by the message status they carried",
            ["status"],
            registry=r,
        )
        self.callback_retried = Counter(
            "outbound_callback_retried",
            "Callback attempts that failed and were scheduled again (reason: http, network, refused_address)",
            ["reason"],
            registry=r,
        )
        self.callback_failed = Counter(
            "outbound_callback_failed", "Callbacks given up after their last attempt", ["reason"], registry=r
        )
        self.callback_duration = Histogram(
            "outbound_callback_request_duration_seconds",
            "Duration of one POST to a client's endpoint",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.callback_outbox_depth = Gauge(
            "outbound_callback_outbox_depth",
            "Callbacks waiting in the outbox (PENDING)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.callback_outbox_age = Gauge(
            "outbound_callback_outbox_oldest_age_seconds",
            "Age of the oldest pending callback (0: the outbox is empty)",
            registry=r,
            multiprocess_mode="livemax",
        )
        for event in CALLBACK_EVENTS:
            self.callback_delivered.labels(event)
        for reason in CALLBACK_REASONS:
            self.callback_retried.labels(reason)
            self.callback_failed.labels(reason)

    def init_webhooks(self, sources: Iterable[str]) -> None:
        """Create the delivery webhook series of these providers at zero (the registry's list)."""
        for provider in sources:
            for event in WEBHOOK_OUTCOMES:
                self.webhook_events.labels(provider, event)

    def init_provider(self, provider: str, channels: Iterable[Channel]) -> None:
        """Create a provider's series at zero, so rate() sees the first message (and the first
        failure of every error code) and the circuit panel shows the provider before anything
        happens."""
        for channel in channels:
            c = channel.value
            self.send_success.labels(c, provider)
            self.ambiguous.labels(c, provider)
            for code in ErrorCode:
                self.send_failure.labels(c, provider, code.value)
            for outcome in Outcome:
                self.provider_duration.labels(provider, c, outcome.value)
            self.circuit_state.labels(provider, c).set(CircuitState.CLOSED.gauge_value)

    def init_failover(self, channel: Channel, providers: Sequence[str]) -> None:
        """Every (from, to) pair of a channel's providers at zero."""
        for source in providers:
            for target in providers:
                if source != target:
                    self.failover.labels(channel.value, source, target)
