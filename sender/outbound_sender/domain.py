"""Domain vocabulary shared by every layer: channels, statuses, error codes, messages, circuits,
the provider-control row (the operator imports it too) and the result of one provider call.

The string values are the operations runbook's (docs/runbook.md): they appear in SQL, logs and metrics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class Channel(StrEnum):
    SMS = "SMS"
    EMAIL = "EMAIL"
    WHATSAPP = "WHATSAPP"


class Status(StrEnum):
    """Message lifecycle: QUEUED -> SENDING -> SENT | QUEUED (retry) | FAILED (dead-letter queue)."""

    QUEUED = "QUEUED"
    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_STATUSES = frozenset({Status.SENT, Status.FAILED, Status.CANCELLED})


class ErrorCode(StrEnum):
    """The normalized error codes (docs/providers.md, "Normalized errors"), plus our own pipeline codes."""

    INVALID_PHONE_NUMBER = "INVALID_PHONE_NUMBER"
    INVALID_EMAIL = "INVALID_EMAIL"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    TEMPLATE_NOT_APPROVED = "TEMPLATE_NOT_APPROVED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    AUTH_FAILED = "AUTH_FAILED"
    RECIPIENT_UNSUBSCRIBED = "RECIPIENT_UNSUBSCRIBED"
    TEMPORARY_ERROR = "TEMPORARY_ERROR"
    PERMANENT_ERROR = "PERMANENT_ERROR"
    # Pipeline codes: not from a provider.
    LEASE_EXPIRED = "LEASE_EXPIRED"
    NO_PROVIDER = "NO_PROVIDER"


class CircuitState(StrEnum):
    """A provider's circuit, in the one vocabulary the worker (per pod) and the operator (fleet) share.

    CLOSED: sending. OPEN: not sending (failures, or forced); messages go to a backup provider of the
    channel or wait. HALF_OPEN: the cool-down passed; a few probe sends decide whether to close it.
    The gauge outbound_provider_circuit_state encodes them as 0, 1, 2 (GAUGE_VALUE).
    """

    CLOSED = "CLOSED"
    HALF_OPEN = "HALF_OPEN"
    OPEN = "OPEN"

    @property
    def gauge_value(self) -> int:
        return {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}[self]


class CircuitMode(StrEnum):
    """How a ChannelProvider's circuit is decided (spec.circuitBreaker.mode): measured, or forced."""

    AUTO = "Auto"
    FORCE_OPEN = "ForceOpen"
    FORCE_CLOSED = "ForceClosed"


class DeliveryStatus(StrEnum):
    """What the provider later reported about a sent message (outbound_message.delivery_status).

    Separate from `status`: a SENT message stays SENT whatever its delivery receipt says. The rank
    orders them so that late or duplicated receipts never move a message backwards.
    """

    SENT = "SENT"  # left the provider towards the carrier / mailbox / WhatsApp
    DEFERRED = "DEFERRED"  # the receiving side asked to try later (e-mail)
    DELIVERED = "DELIVERED"
    UNDELIVERED = "UNDELIVERED"  # failed or undelivered after acceptance
    BOUNCED = "BOUNCED"  # e-mail bounce or drop
    READ = "READ"  # WhatsApp read receipt, e-mail open

    @property
    def rank(self) -> int:
        return _DELIVERY_RANK[self]


_DELIVERY_RANK = {
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DEFERRED: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.UNDELIVERED: 2,
    DeliveryStatus.BOUNCED: 2,
    DeliveryStatus.READ: 3,
}


class Outcome(StrEnum):
    """What one provider call did to its message (stored on outbound_attempt.outcome)."""

    SENT = "SENT"
    RETRY = "RETRY"
    FAILED = "FAILED"
    DEFER = "DEFER"  # rescheduled without burning an attempt (throttle, quota, circuit)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A claimed message, as the worker and the providers see it."""

    id: int
    org_id: str
    channel: Channel
    to_recipient: str
    lease_id: str
    attempt_no: int
    attempt_count: int
    max_attempts: int
    body: str | None = None
    subject: str | None = None
    template_code: str | None = None
    template_language: str | None = None
    template_params: dict[str, Any] = field(default_factory=dict)
    dossier_id: str | None = None
    correlation_id: str | None = None
    priority: int = 0
    created_at: dt.datetime | None = None
    traceparent: str | None = None  # W3C trace context of the request that created it (docs/tracing.md)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to enqueue (library API and CLI; the HTTP API builds these from its models)."""

    org_id: str
    channel: Channel
    to_recipient: str
    body: str | None = None
    subject: str | None = None
    template_code: str | None = None
    template_language: str | None = None
    template_params: dict[str, Any] = field(default_factory=dict)
    dossier_id: str | None = None
    correlation_id: str | None = None
    priority: int = 0
    max_attempts: int = 5
    send_at: dt.datetime | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderControl:
    """One provider_control row: written by the operator (one per ChannelProvider), read by every
    worker. The operator's columns circuit_reason and observed_generation are not read by workers."""

    provider: str
    channel: Channel
    kind: str
    enabled: bool = True
    priority: int = 100
    circuit_mode: CircuitMode = CircuitMode.AUTO
    circuit_state: CircuitState = CircuitState.CLOSED
    circuit_since: dt.datetime | None = None
    circuit_reason: str | None = None
    half_open_probes_per_minute: int = 6
    batch_size: int = 10
    observed_generation: int | None = None

    @property
    def usable(self) -> bool:
        return self.enabled and self.circuit_state is not CircuitState.OPEN

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ProviderControl:
        """From a database row holding some or all of the columns (absent ones take the defaults)."""
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        values["channel"] = Channel(str(values["channel"]))
        for name, kind in (("circuit_mode", CircuitMode), ("circuit_state", CircuitState)):
            if name in values:
                values[name] = kind(str(values[name]))
        return cls(**values)

    def as_args(self) -> tuple[Any, ...]:
        """The columns in table order: the parameters of the operator's upsert."""
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True, slots=True)
class CallResult:
    """One provider call's outcome (or a decision not to call), ready to be recorded."""

    message: OutboundMessage
    outcome: Outcome
    provider: str | None
    duration_ms: int
    error_code: str | None = None
    error_message: str | None = None
    provider_code: str | None = None
    provider_message: str | None = None
    provider_message_id: str | None = None
    http_status: int | None = None
    retry_delay_ms: int | None = None
    ambiguous: bool = False
    release: bool = False  # hand the message back unsent: no attempt burnt, no attempt row
