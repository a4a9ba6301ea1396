"""Scaling decisions: KEDA-like replicas with hysteresis, cool-down, in-flight hold; batch size."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_operator.handlers.context import Runtime
from outbound_operator.reconcile.scaling import Damping, Load, next_batch, next_replicas, wanted_replicas
from outbound_operator.reconcile.spec import ScalingSpec
from outbound_operator.settings import load_settings

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
SPEC = ScalingSpec.model_validate(
    {"replicas": {"min": 1, "max": 10}, "targetQueueDepthPerReplica": 100, "batchSize": {"min": 5, "max": 200}}
)
DAMPING = Damping(cooldown_seconds=300, tolerance=0.1, batch_tolerance=0.2)


def decide(
    current: int, depth: int, in_flight: int = 0, last: dt.datetime | None = None, now: float = 1000
) -> tuple[int, str]:
    d = next_replicas(
        current, Load(depth, in_flight), SPEC, DAMPING, last_change=last, now=T0 + dt.timedelta(seconds=now)
    )
    return d.replicas, d.reason


def test_replicas_are_ceil_of_depth_over_target_within_the_range() -> None:
    assert [wanted_replicas(d, SPEC) for d in (0, 1, 100, 101, 950, 100_000)] == [1, 1, 1, 2, 10, 10]


def test_up_at_once_down_only_after_cool_down_and_without_in_flight_work() -> None:
    assert decide(1, 350) == (4, "ScaledUp")
    assert decide(4, 0, last=T0 + dt.timedelta(seconds=900)) == (4, "HeldCoolDown")
    assert decide(4, 0, in_flight=3) == (4, "HeldInFlight")
    assert decide(4, 0, last=T0) == (1, "ScaledDown")


def test_tolerance_band_prevents_flapping_at_a_boundary() -> None:
    assert decide(2, 200) == (2, "Steady")  # 200 needs 2; 220 (10 % more) would need 3, but we are not above
    assert decide(2, 195) == (2, "Steady")  # 195 * 1.1 > 200: staying at 2
    assert decide(2, 180) == (2, "Steady")
    assert decide(2, 90) == (1, "ScaledDown")  # 90 * 1.1 = 99 fits one replica


def test_a_spec_range_change_clamps_at_once() -> None:
    narrow = ScalingSpec.model_validate({"replicas": {"min": 3, "max": 4}})
    d = next_replicas(9, Load(0, 5), narrow, DAMPING, last_change=T0, now=T0)
    assert (d.replicas, d.reason) == (4, "Clamped")


def test_batch_size_starts_at_initial_and_moves_only_beyond_the_tolerance() -> None:
    assert next_batch(None, 10_000, 1, SPEC, DAMPING) == 10
    assert next_batch(10, 10_000, 1, SPEC, DAMPING) == 200  # a long queue: the maximum
    assert next_batch(100, 110, 1, SPEC, DAMPING) == 100  # within 20 %: unchanged
    assert next_batch(100, 300, 2, SPEC, DAMPING) == 150
    assert next_batch(100, 0, 1, SPEC, DAMPING) == 5  # an empty queue: the minimum


@given(
    current=st.integers(0, 50),
    depth=st.integers(0, 10**7),
    in_flight=st.integers(0, 100),
    elapsed=st.floats(0, 10_000),
)
def test_replicas_always_within_range_and_never_down_while_in_flight(
    current: int, depth: int, in_flight: int, elapsed: float
) -> None:
    replicas, reason = decide(current, depth, in_flight, last=T0, now=elapsed)
    assert SPEC.replicas.min <= replicas <= SPEC.replicas.max
    if in_flight and reason == "ScaledDown":
        raise AssertionError("scaled down with work in flight")


@given(current=st.one_of(st.none(), st.integers(1, 1000)), depth=st.integers(0, 10**7), replicas=st.integers(0, 20))
def test_batch_size_always_within_range(current: int | None, depth: int, replicas: int) -> None:
    assert 5 <= next_batch(current, depth, replicas, SPEC, DAMPING) <= 200


def runtime_damping(monkeypatch: pytest.MonkeyPatch, **env: str) -> Damping:
    """The damping the operator's reconcile uses (Runtime.damping), its settings from the environment."""
    monkeypatch.setenv("OUTBOUND_OPERATOR_DATABASE_URL", "postgresql://unused.invalid/none")
    for name, value in env.items():
        monkeypatch.setenv(f"OUTBOUND_OPERATOR_{name}", value)
    runtime = Runtime(settings=load_settings(), db=None, kube=None, metrics=None)  # type: ignore[arg-type]
    return runtime.damping


def test_the_scaling_damping_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    empty, light = Load(0, 0), Load(90, 0)
    changed = T0 - dt.timedelta(seconds=100)  # the last change was 100 s ago

    def replicas(current: int, now_load: Load, damping: Damping) -> tuple[int, str]:
        d = next_replicas(current, now_load, SPEC, damping, last_change=changed, now=T0)
        return d.replicas, d.reason

    with monkeypatch.context() as m:  # a cool-down longer than 100 s holds the scale-down
        assert replicas(4, empty, runtime_damping(m, SCALE_DOWN_COOLDOWN_SECONDS="300")) == (4, "HeldCoolDown")
    with monkeypatch.context() as m:
        assert replicas(4, empty, runtime_damping(m, SCALE_DOWN_COOLDOWN_SECONDS="60")) == (1, "ScaledDown")
    with monkeypatch.context() as m:  # 90 * 1.2 = 108 no longer fits one replica of 100
        assert replicas(2, light, runtime_damping(m, SCALE_DOWN_COOLDOWN_SECONDS="0", SCALE_TOLERANCE="0.2")) == (
            2,
            "Steady",
        )
    with monkeypatch.context() as m:
        assert replicas(2, light, runtime_damping(m, SCALE_DOWN_COOLDOWN_SECONDS="0", SCALE_TOLERANCE="0.05")) == (
            1,
            "ScaledDown",
        )
    with monkeypatch.context() as m:  # 100 -> 110 moves by 10 %: published only under a smaller tolerance
        assert next_batch(100, 110, 1, SPEC, runtime_damping(m, BATCH_TOLERANCE="0.2")) == 100
    with monkeypatch.context() as m:
        assert next_batch(100, 110, 1, SPEC, runtime_damping(m, BATCH_TOLERANCE="0.05")) == 110
