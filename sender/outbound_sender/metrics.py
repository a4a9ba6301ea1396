"""Prometheus metrics, with the runbook's names. Label values are bounded: no recipients, no ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Delivery latency (enqueue -> provider accepted): buckets around the runbook's 30 s / 60 s thresholds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 20, 30)


class Metrics:
    """All metrics of a sender process, on one registry (tests create their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
        self.in_flight = Gauge("outbound_worker_in_flight", "Provider calls in progress", registry=r)
        self.heartbeat = Gauge(
            "outbound_worker_last_poll_timestamp_seconds",
            "Unix time of the last successful claim",
            registry=r,
        )
        self.claimed = Counter("outbound_worker_claimed", "Messages claimed", ["channel"], registry=r)
        # Providers (issue 3): circuit state per provider (0=CLOSED, 1=HALF_OPEN, 2=OPEN), failovers,
        # and delivery webhooks by outcome (recorded, duplicate, unmatched, rejected, resolved_ambiguous).
        self.circuit_state = Gauge(
            "outbound_provider_circuit_state",
            "Per-pod circuit breaker state: 0=CLOSED, 1=HALF_OPEN, 2=OPEN",
            ["provider", "channel"],
            registry=r,
        )
        self.failover = Counter(
            "outbound_provider_failover",
            "Sends routed past a provider whose circuit was open",
            ["channel", "from_provider", "to_provider"],
            registry=r,
        )
        self.webhook_events = Counter(
            "outbound_webhook_events",
            "Delivery webhook events by outcome",
            ["provider", "outcome"],
            registry=r,
        )
