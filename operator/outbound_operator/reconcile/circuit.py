"""Circuit breaker decisions (pure): mode + current state + measured calls -> next state.

    CLOSED ──failure rate ≥ threshold over ≥ minimumRequests calls──▶ OPEN
    OPEN ──coolDown elapsed──▶ HALF_OPEN (workers let halfOpenProbesPerMinute through)
    HALF_OPEN ──probes judged: failure rate < threshold──▶ CLOSED
              └─────────────── failure rate ≥ threshold──▶ OPEN (cool-down again)
    ForceOpen / ForceClosed override all of it; leaving ForceOpen probes first (HALF_OPEN).

The window of a closed circuit starts no earlier than its closing, so failures from before an
opening cannot trip it again right after it closed (resilience4j resets its window the same way).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from outbound_operator.reconcile.spec import CircuitBreakerSpec
from outbound_sender.domain import CircuitMode, CircuitState

# The CRD's spelling of a state (status.circuit.state), and back.
CRD_SPELLING = {CircuitState.CLOSED: "Closed", CircuitState.OPEN: "Open", CircuitState.HALF_OPEN: "HalfOpen"}
FROM_CRD = {spelling: state for state, spelling in CRD_SPELLING.items()}


FORCED_OPEN = "ForcedOpen"
FORCED_CLOSED = "ForcedClosed"


@dataclass(frozen=True, slots=True)
class Circuit:
    state: CircuitState
    since: dt.datetime
    reason: str
    message: str = ""

    def moved(self, state: CircuitState, now: dt.datetime, reason: str, message: str) -> Circuit:
        return Circuit(state, now, reason, message)


@dataclass(frozen=True, slots=True)
class Calls:
    """Provider calls counted in a window (applied attempts; DEFER is not a provider call)."""

    total: int
    failures: int

    @property
    def success_rate(self) -> float | None:
        """Percent of successful calls; None without calls."""
        if self.total == 0:
            return None
        return 100.0 * (self.total - self.failures) / self.total

    def failing(self, threshold_percent: int) -> bool:
        return self.total > 0 and self.failures * 100 >= threshold_percent * self.total


def initial(now: dt.datetime) -> Circuit:
    return Circuit(CircuitState.CLOSED, now, "Initialized", "circuit closed")


def window_start(current: Circuit, policy: CircuitBreakerSpec, now: dt.datetime) -> dt.datetime:
    """Since when calls count: the window, cut at the closing; probes only since half-open began."""
    start = now - dt.timedelta(seconds=policy.window_seconds)
    if current.state is CircuitState.CLOSED:
        return max(start, current.since)
    if current.state is CircuitState.HALF_OPEN:
        return current.since
    return start


def apply_mode(current: Circuit, mode: CircuitMode, now: dt.datetime) -> Circuit:
    """The spec's mode alone (no measurement): what a spec change publishes at once."""
    if mode is CircuitMode.FORCE_OPEN:
        if current.state is CircuitState.OPEN and current.reason == FORCED_OPEN:
            return current
        message = "circuit forced open by spec.circuitBreaker.mode"
        return current.moved(CircuitState.OPEN, now, FORCED_OPEN, message)
    if mode is CircuitMode.FORCE_CLOSED:
        if current.state is CircuitState.CLOSED and current.reason == FORCED_CLOSED:
            return current
        return current.moved(
            CircuitState.CLOSED, now, FORCED_CLOSED, "circuit forced closed by spec.circuitBreaker.mode"
        )
    if current.reason == FORCED_OPEN:
        return current.moved(CircuitState.HALF_OPEN, now, "ForceOpenLifted", "mode Auto: probing before closing")
    if current.reason == FORCED_CLOSED:
        return current.moved(CircuitState.CLOSED, now, "AutoResumed", "mode Auto: measuring the failure rate")
    return current


def _trip(current: Circuit, calls: Calls, policy: CircuitBreakerSpec, now: dt.datetime) -> Circuit:
    if calls.total < policy.minimum_requests or not calls.failing(policy.failure_rate_threshold):
        return current
    message = (
        f"{calls.failures} of {calls.total} calls failed within {policy.window} "
        f"(threshold {policy.failure_rate_threshold}%): circuit open for {policy.cool_down}"
    )
    return current.moved(CircuitState.OPEN, now, "FailureRateAboveThreshold", message)


def _cool_down(current: Circuit, policy: CircuitBreakerSpec, now: dt.datetime) -> Circuit:
    if (now - current.since).total_seconds() < policy.cool_down_seconds:
        return current
    message = f"cool-down of {policy.cool_down} elapsed: {policy.half_open_probes_per_minute} probes/min allowed"
    return current.moved(CircuitState.HALF_OPEN, now, "CoolDownElapsed", message)


def _judge_probes(
    current: Circuit, probes: Calls, policy: CircuitBreakerSpec, needed: int, now: dt.datetime
) -> Circuit:
    threshold = policy.failure_rate_threshold
    hopeless = probes.failures * 100 >= threshold * needed  # cannot end below the threshold any more
    if hopeless or (probes.total >= needed and probes.failing(threshold)):
        message = f"{probes.failures} of {probes.total} probes failed: circuit open again for {policy.cool_down}"
        return current.moved(CircuitState.OPEN, now, "ProbesFailed", message)
    if probes.total >= needed:
        message = f"{probes.total - probes.failures} of {probes.total} probes succeeded: circuit closed"
        return current.moved(CircuitState.CLOSED, now, "ProbesSucceeded", message)
    return current


def decide(
    current: Circuit, policy: CircuitBreakerSpec, calls: Calls, now: dt.datetime, *, probes_to_close: int = 3
) -> Circuit:
    """Next circuit state; `calls` are counted since window_start(current, ...)."""
    moved = apply_mode(current, policy.mode, now)
    if policy.mode is not CircuitMode.AUTO or moved != current:
        return moved
    if current.state is CircuitState.CLOSED:
        return _trip(current, calls, policy, now)
    if current.state is CircuitState.OPEN:
        return _cool_down(current, policy, now)
    return _judge_probes(current, calls, policy, probes_to_close, now)


def changed(before: Circuit, after: Circuit) -> bool:
    return (before.state, before.reason) != (after.state, after.reason)
