"""Circuit breaker decisions: every transition of the state machine, and the window rule."""

from __future__ import annotations

import datetime as dt

import kopf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_operator.handlers import channelprovider
from outbound_operator.handlers.context import ProviderMemory, Runtime
from outbound_operator.metrics import OperatorMetrics
from outbound_operator.reconcile.circuit import Calls, Circuit, apply_mode, decide, initial, window_start
from outbound_operator.reconcile.spec import ChannelProviderSpec, CircuitBreakerSpec
from outbound_operator.settings import load_settings
from outbound_sender.domain import CircuitMode, CircuitState

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
POLICY = CircuitBreakerSpec(failureRateThreshold=50, window="10m", minimumRequests=20, coolDown="60s")


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_closed_trips_at_the_threshold_with_enough_calls() -> None:
    opened = decide(initial(T0), POLICY, Calls(20, 10), at(5))
    assert (opened.state, opened.reason, opened.since) == (CircuitState.OPEN, "FailureRateAboveThreshold", at(5))
    assert "10 of 20 calls failed" in opened.message


@pytest.mark.parametrize("calls", [Calls(19, 19), Calls(20, 9), Calls(0, 0)])
def test_closed_stays_closed_below_minimum_or_threshold(calls: Calls) -> None:
    assert decide(initial(T0), POLICY, calls, at(5)) == initial(T0)


def test_open_waits_for_the_cool_down_then_goes_half_open() -> None:
    opened = Circuit(CircuitState.OPEN, T0, "FailureRateAboveThreshold")
    assert decide(opened, POLICY, Calls(0, 0), at(59)) == opened
    half = decide(opened, POLICY, Calls(0, 0), at(60))
    assert (half.state, half.reason, half.since) == (CircuitState.HALF_OPEN, "CoolDownElapsed", at(60))


def test_half_open_closes_when_probes_succeed_and_reopens_when_they_fail() -> None:
    half = Circuit(CircuitState.HALF_OPEN, T0, "CoolDownElapsed")
    assert decide(half, POLICY, Calls(2, 0), at(10), probes_to_close=3) == half  # not judged yet
    closed = decide(half, POLICY, Calls(3, 1), at(10), probes_to_close=3)
    assert (closed.state, closed.reason) == (CircuitState.CLOSED, "ProbesSucceeded")
    reopened = decide(half, POLICY, Calls(2, 2), at(10), probes_to_close=3)  # cannot get below 50 % any more
    assert (reopened.state, reopened.reason, reopened.since) == (CircuitState.OPEN, "ProbesFailed", at(10))


def test_forced_modes_override_measurements_and_lifting_force_open_probes_first() -> None:
    forced = apply_mode(initial(T0), CircuitMode.FORCE_OPEN, at(1))
    assert (forced.state, forced.reason) == (CircuitState.OPEN, "ForcedOpen")
    assert apply_mode(forced, CircuitMode.FORCE_OPEN, at(2)) is forced  # idempotent: no new transition
    closed = decide(forced, CircuitBreakerSpec(mode=CircuitMode.FORCE_CLOSED), Calls(100, 100), at(3))
    assert (closed.state, closed.reason) == (CircuitState.CLOSED, "ForcedClosed")
    lifted = decide(forced, POLICY, Calls(100, 100), at(4))
    assert (lifted.state, lifted.reason) == (CircuitState.HALF_OPEN, "ForceOpenLifted")


def test_window_of_a_closed_circuit_starts_at_its_closing() -> None:
    closed_recently = Circuit(CircuitState.CLOSED, at(590), "ProbesSucceeded")
    assert window_start(closed_recently, POLICY, at(600)) == at(590)
    assert window_start(Circuit(CircuitState.CLOSED, T0, "x"), POLICY, at(1200)) == at(600)
    assert window_start(Circuit(CircuitState.HALF_OPEN, at(30), "x"), POLICY, at(1200)) == at(30)


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_success_rate_is_a_percentage(total: int, failures: int) -> None:
    calls = Calls(total, min(failures, total))
    rate = calls.success_rate
    if total == 0:
        assert rate is None
    else:
        assert rate is not None
        assert 0.0 <= rate <= 100.0


class CountedCalls:
    """The operator's database, as far as the circuit decision reads it: the calls of the window."""

    def __init__(self, calls: Calls) -> None:
        self.counted = calls

    async def calls(self, _provider: str, _since: dt.datetime) -> Calls:
        return self.counted


@pytest.mark.parametrize(("probes", "state"), [("3", CircuitState.CLOSED), ("5", CircuitState.HALF_OPEN)])
async def test_the_reconciles_half_open_judgement_waits_for_the_probes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, probes: str, state: CircuitState
) -> None:
    monkeypatch.setenv("OUTBOUND_OPERATOR_DATABASE_URL", "postgresql://unused.invalid/none")
    monkeypatch.setenv("OUTBOUND_OPERATOR_HALF_OPEN_PROBES_TO_CLOSE", probes)
    events: list[str] = []
    monkeypatch.setattr(kopf, "event", lambda *_args, **fields: events.append(fields["reason"]))
    rt = Runtime(settings=load_settings(), db=CountedCalls(Calls(3, 0)), kube=None, metrics=OperatorMetrics())  # type: ignore[arg-type]
    memory = ProviderMemory(circuit=Circuit(CircuitState.HALF_OPEN, T0, "CoolDownElapsed"))
    spec = ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox", "circuitBreaker": {"coolDown": "60s"}})
    body = {"metadata": {"name": "sms"}}
    decided, _ = await channelprovider.decide_circuit(rt, body, spec, memory, at(10))  # type: ignore[arg-type]
    assert decided.state is state  # three good probes close it only when three are enough
    assert events == (["ProbesSucceeded"] if state is CircuitState.CLOSED else [])
