"""When to try again: a pure function of the attempt number, the provider's hint and a random draw.

Exponential backoff with "equal jitter": the n-th retry waits between half and all of
min(max, base * 2**(n-1)), so retries of many messages that failed together spread out, yet a retry
never comes sooner than half the nominal delay. A provider hint (Retry-After, X-RateLimit-Reset)
is a floor: we never call back before the provider said we may, capped at `max_hint`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 2.0
    max_seconds: float = 3600.0
    max_hint_seconds: float = 86_400.0

    def nominal(self, attempt: int) -> float:
        """Delay after failed attempt number `attempt` (1-based), before jitter."""
        exponent = min(max(attempt, 1) - 1, 62)
        return min(self.max_seconds, self.base_seconds * (2.0**exponent))

    def delay(self, attempt: int, *, hint: float | None = None, draw: float | None = None) -> float:
        """Seconds to wait; `draw` in [0, 1) is the random part (injected by tests)."""
        unit = random.random() if draw is None else draw
        nominal = self.nominal(attempt)
        jittered = nominal / 2 + (nominal / 2) * unit
        if hint is not None and hint > 0:
            return max(jittered, min(hint, self.max_hint_seconds))
        return jittered
