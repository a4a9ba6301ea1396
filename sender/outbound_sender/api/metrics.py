"""Metrics of the HTTP API, on the process's registry. Labels are bounded: route templates, not paths."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from outbound_sender.domain import Channel
from outbound_sender.metrics import REQUEST_BUCKETS


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.request_duration = Histogram(
            "outbound_api_request_duration_seconds",
            "HTTP API request duration, by route template and status",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.created = Counter(
            "outbound_api_messages_created",
            "Messages created through the API (idempotent replays not counted)",
            ["channel"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "outbound_api_rate_limited", "Requests answered 429 by the per-organisation limit", registry=registry
        )
        for channel in Channel:  # at zero from the start, so rate() sees the first message
            self.created.labels(channel.value)
