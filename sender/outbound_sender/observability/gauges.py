"""Database-derived gauges: queue depth by status, dead-letter queue size, stuck messages, WhatsApp
quota per organisation.

They describe the shared queue, not the pod: every pod exports the same global value, so queries
aggregate them with `max()` (never `sum()`). The collector exports the last snapshot the refresher
read (refresher.py); before the first successful refresh it exports nothing rather than zeros, so
an alert cannot mistake "not measured yet" for "empty queue". Swapping one immutable snapshot keeps
a scrape consistent: all gauges of one scrape come from one query.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STATUSES = ("queued", "sending", "sent", "failed")


@dataclass(frozen=True, slots=True)
class QuotaRow:
    org_id: str
    used: int
    limit: int
    throttled: bool
    reset_at: float

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One reading of the database (one query)."""

    statuses: Mapping[str, int]
    dead_letter: int
    stuck: int
    oldest_due_age_seconds: float
    quotas: Sequence[QuotaRow] = field(default_factory=tuple)


def snapshot_from_row(row: Mapping[str, Any] | asyncpg.Record) -> Snapshot:
    """Build a Snapshot from the metrics_snapshot row (quota as decoded JSON or its text)."""
    quota = row["quota"]
    if isinstance(quota, str):
        quota = json.loads(quota)
    return Snapshot(
        statuses={status: int(row[status]) for status in STATUSES},
        dead_letter=int(row["dead_letter"]),
        stuck=int(row["stuck"]),
        oldest_due_age_seconds=max(float(row["oldest_due_age"]), 0.0),
        quotas=tuple(_quota_row(item) for item in quota),
    )


def _quota_row(item: Mapping[str, Any]) -> QuotaRow:
    return QuotaRow(
        org_id=str(item["org_id"]),
        used=int(item["used"]),
        limit=int(item["quota_limit"]),
        throttled=bool(item["throttled"]),
        reset_at=float(item["reset_at"]),
    )


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _queue_families() -> list[GaugeMetricFamily]:
    return [
        _gauge(
            "outbound_message_queue_depth",
            "Messages by status (global, same in every pod: aggregate with max). "
            "sent counts messages created in the last 24 h",
            ["status"],
        ),
        _gauge(
            "outbound_message_dead_letter_queue_size",
            "FAILED messages with attempt_count >= max_attempts (global: aggregate with max)",
        ),
        _gauge(
            "outbound_message_stuck_messages",
            "QUEUED messages with attempt_count >= 3 not updated for 2 h (global: aggregate with max)",
        ),
        _gauge(
            "outbound_message_oldest_due_age_seconds",
            "Age of the oldest QUEUED message that is due (0 when none; global: aggregate with max)",
        ),
    ]


def _quota_families() -> list[GaugeMetricFamily]:
    org = ["org_id"]
    return [
        _gauge("whatsapp_quota_used", "WhatsApp messages counted in the current window", org),
        _gauge("whatsapp_quota_remaining", "WhatsApp messages left in the current window", org),
        _gauge("whatsapp_quota_limit", "WhatsApp messages allowed per window", org),
        _gauge("whatsapp_quota_throttled", "1 while the organisation's throttle_until is ahead", org),
        _gauge("whatsapp_quota_reset_timestamp_seconds", "Unix time the current window ends", org),
    ]


def families(snapshot: Snapshot | None) -> list[GaugeMetricFamily]:
    """The metric families of a snapshot (empty families when there is none yet)."""
    queue, quota = _queue_families(), _quota_families()
    if snapshot is None:
        return queue + quota
    for status in STATUSES:
        queue[0].add_metric([status], snapshot.statuses.get(status, 0))
    queue[1].add_metric([], snapshot.dead_letter)
    queue[2].add_metric([], snapshot.stuck)
    queue[3].add_metric([], snapshot.oldest_due_age_seconds)
    for row in snapshot.quotas:
        values = (row.used, row.remaining, row.limit, int(row.throttled), row.reset_at)
        for family, value in zip(quota, values, strict=True):
            family.add_metric([row.org_id], value)
    return queue + quota


class DatabaseGauges(Collector):
    """A prometheus_client collector exporting the latest Snapshot."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def update(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        return iter(families(None))

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        if snapshot is None:
            return iter(())
        return iter(families(snapshot))
