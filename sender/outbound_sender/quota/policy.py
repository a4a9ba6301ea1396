"""WhatsApp limits per organisation (whatsapp_quota_policy, written by the operator from QuotaPolicy).

An organisation without a row gets the defaults below, which are Meta's: a 1,000-message tier,
24 h windows, 80 msg/s per business number, one message per recipient every 6 s, the runbook's
urgent templates, and no deferral threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from outbound_sender.domain import Channel

DEFAULT_URGENT = frozenset({"urgent_alert", "appointment_reminder"})


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    org_id: str
    daily_limit: int | None = 1000  # None: the unlimited tier
    reset_period_seconds: float = 86_400.0
    messages_per_second: float = 80.0
    pair_interval_seconds: float = 6.0
    urgent_templates: frozenset[str] = DEFAULT_URGENT
    defer_non_urgent_above_percent: int | None = None
    fallback_channel: Channel | None = None

    def is_urgent(self, template_code: str | None) -> bool:
        return template_code is not None and template_code in self.urgent_templates

    def ceiling_percent(self, template_code: str | None) -> int:
        """How much of the quota this message may use: urgent templates all of it, others up to
        the deferral threshold."""
        if self.is_urgent(template_code) or self.defer_non_urgent_above_percent is None:
            return 100
        return self.defer_non_urgent_above_percent

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> QuotaPolicy:
        fallback = row.get("fallback_channel")
        threshold = row.get("defer_non_urgent_above_percent")
        limit = row.get("daily_limit")
        return cls(
            org_id=str(row["org_id"]),
            daily_limit=int(limit) if limit is not None else None,  # type: ignore[call-overload]
            reset_period_seconds=float(row["reset_period_seconds"]),  # type: ignore[arg-type]
            messages_per_second=float(row["messages_per_second"]),  # type: ignore[arg-type]
            pair_interval_seconds=float(row["pair_interval_seconds"]),  # type: ignore[arg-type]
            urgent_templates=frozenset(row["urgent_templates"] or ()),  # type: ignore[call-overload]
            defer_non_urgent_above_percent=int(threshold) if threshold is not None else None,  # type: ignore[call-overload]
            fallback_channel=Channel(str(fallback)) if fallback else None,
        )


class PolicyBook:
    """The latest policies by organisation; refreshed with the runtime control."""

    def __init__(self, default: QuotaPolicy | None = None) -> None:
        self.default = default or QuotaPolicy(org_id="*")
        self._by_org: dict[str, QuotaPolicy] = {}

    def update(self, policies: Iterable[QuotaPolicy]) -> None:
        self._by_org = {p.org_id: p for p in policies}

    def get(self, org_id: str) -> QuotaPolicy:
        policy = self._by_org.get(org_id)
        if policy is not None:
            return policy
        return QuotaPolicy(
            org_id=org_id,
            daily_limit=self.default.daily_limit,
            reset_period_seconds=self.default.reset_period_seconds,
            messages_per_second=self.default.messages_per_second,
            pair_interval_seconds=self.default.pair_interval_seconds,
        )
