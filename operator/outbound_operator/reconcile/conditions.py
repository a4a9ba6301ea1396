"""metav1.Condition handling (pure), as apimachinery's meta.SetStatusCondition does it.

lastTransitionTime changes only when the status changes; reason, message and observedGeneration
are refreshed every time. Conditions keep a stable order (by type) so a status that did not change
produces an identical list, and the operator writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else str(self.status)


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def set_condition(
    conditions: Iterable[Mapping[str, Any]], new: Condition, generation: int, now: dt.datetime
) -> list[dict[str, Any]]:
    existing = [dict(c) for c in conditions]
    old = find(existing, new.type)
    unchanged = old is not None and old.get("status") == new.status_text
    entry = {
        "type": new.type,
        "status": new.status_text,
        "observedGeneration": generation,
        "lastTransitionTime": old["lastTransitionTime"] if unchanged and old else timestamp(now),
        "reason": new.reason,
        "message": new.message,
    }
    others = [c for c in existing if c.get("type") != new.type]
    return sorted([*others, entry], key=lambda c: str(c["type"]))


def set_all(
    conditions: Iterable[Mapping[str, Any]], new: Iterable[Condition], generation: int, now: dt.datetime
) -> list[dict[str, Any]]:
    result = [dict(c) for c in conditions]
    for condition in new:
        result = set_condition(result, condition, generation, now)
    return result


def transitions(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Conditions whose status or reason differs from before (for Events)."""
    old = {c.get("type"): (c.get("status"), c.get("reason")) for c in before}
    return [c for c in after if old.get(c.get("type")) != (c.get("status"), c.get("reason"))]
