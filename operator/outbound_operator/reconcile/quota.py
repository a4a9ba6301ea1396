"""QuotaPolicy -> whatsapp_quota_policy row, the ledger's limit, status and warnings (pure).

The ledger (whatsapp_rate_limit) is shared with on-call: the runbook (scenario 4, option B) halves
quota_limit by hand in an emergency. A limit LOWER than the policy's is therefore respected and
reported (ManualQuotaOverride), never reverted, until the spec changes; a HIGHER one is drift
and is corrected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from outbound_operator.reconcile.conditions import Condition, timestamp
from outbound_operator.reconcile.spec import QuotaPolicySpec

UNLIMITED = 2_147_483_647  # whatsapp_rate_limit.quota_limit is a NOT NULL integer


@dataclass(frozen=True, slots=True)
class Ledger:
    used: int
    limit: int
    reset_at: dt.datetime
    throttle_until: dt.datetime | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Ledger:
        return cls(record["messages_sent_count"], record["quota_limit"], record["reset_at"], record["throttle_until"])

    def used_now(self, now: dt.datetime) -> int:
        """The count in force: an elapsed window restarts at 0 on the next reservation."""
        return 0 if self.reset_at <= now else self.used


@dataclass(frozen=True, slots=True)
class LimitAction:
    kind: str  # Create, Restore, Keep, ManualOverride, Drift
    limit: int  # the value to write (Create/Restore/Drift) or the one kept

    @property
    def writes(self) -> bool:
        return self.kind in {"Create", "Restore", "Drift"}


def policy_row(spec: QuotaPolicySpec, generation: int) -> tuple[Any, ...]:
    """Arguments of the quota_policy_upsert query, in order."""
    return (
        spec.org,
        spec.limit,
        spec.reset_period_seconds,
        spec.messages_per_second,
        spec.pair_rate_seconds,
        list(spec.alert_thresholds),
        sorted(spec.urgent_templates),
        spec.defer_non_urgent_above_percent,
        None if spec.fallback_channel == "None" else spec.fallback_channel,
        generation,
    )


def policy_limit(spec: QuotaPolicySpec) -> int:
    limit = spec.limit
    return UNLIMITED if limit is None else limit


def limit_action(spec: QuotaPolicySpec, ledger: Ledger | None, spec_changed: bool) -> LimitAction:
    wanted = policy_limit(spec)
    if ledger is None:
        return LimitAction("Create", wanted)
    if ledger.limit == wanted:
        return LimitAction("Keep", wanted)
    if spec_changed:
        return LimitAction("Restore", wanted)
    if ledger.limit < wanted:
        return LimitAction("ManualOverride", ledger.limit)
    return LimitAction("Drift", wanted)


def crossed_threshold(used: int, limit: int, thresholds: list[int]) -> int | None:
    """The highest alert threshold that usage has reached, if any."""
    if limit <= 0 or limit >= UNLIMITED:
        return None
    percent = 100.0 * used / limit
    reached = [t for t in thresholds if percent >= t]
    return max(reached) if reached else None


def warning(used: int, limit: int, thresholds: list[int]) -> Condition:
    crossed = crossed_threshold(used, limit, thresholds)
    if crossed is None:
        return Condition("QuotaWarning", False, "BelowThresholds", f"{used} of {_limit_text(limit)} used")
    percent = 100.0 * used / limit
    message = f"{used} of {limit} used ({percent:.1f}%): alert threshold {crossed}% reached"
    return Condition("QuotaWarning", True, f"UsageAbove{crossed}Percent", message)


def override_condition(action: LimitAction, spec: QuotaPolicySpec) -> Condition:
    if action.kind == "ManualOverride":
        message = f"quota_limit {action.limit} set by hand is below the policy's {policy_limit(spec)}: kept"
        return Condition("ManualOverride", True, "ManualQuotaOverride", message)
    return Condition("ManualOverride", False, "PolicyLimitInForce", f"quota_limit {_limit_text(action.limit)}")


def _limit_text(limit: int) -> str:
    return "unlimited" if limit >= UNLIMITED else str(limit)


def figures(ledger: Ledger, now: dt.datetime) -> dict[str, Any]:
    """Status figures: used, remaining, resetAt, throttledUntil (absent when not throttled)."""
    used = ledger.used_now(now)
    status: dict[str, Any] = {"used": used, "resetAt": timestamp(ledger.reset_at), "throttledUntil": None}
    status["remaining"] = None if ledger.limit >= UNLIMITED else max(ledger.limit - used, 0)
    held = [t for t in (ledger.throttle_until,) if t is not None and t > now]
    if ledger.limit < UNLIMITED and used >= ledger.limit and ledger.reset_at > now:
        held.append(ledger.reset_at)
    if held:
        status["throttledUntil"] = timestamp(max(held))
    return status
