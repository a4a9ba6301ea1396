"""Runtime control rules: which provider sends a channel, failover, probes, batch size."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outbound_sender.domain import Channel, CircuitState, ProviderControl
from outbound_sender.worker.control import ProbeBudget, RuntimeControl

SMS = Channel.SMS


def row(name: str, priority: int = 100, **fields: object) -> ProviderControl:
    return ProviderControl(provider=name, channel=SMS, kind="sandbox", priority=priority, **fields)  # type: ignore[arg-type]


def test_an_uncontrolled_channel_is_sent_as_configured() -> None:
    control = RuntimeControl(["a"])
    assert control.allowed_channels([SMS, Channel.EMAIL]) == {SMS, Channel.EMAIL}
    assert control.claim_size(SMS, 10, 0.0) == 10


def test_the_lowest_priority_usable_provider_sends_and_the_backup_stands_by() -> None:
    primary, backup = RuntimeControl(["primary"]), RuntimeControl(["backup"])
    rows = [row("primary", 10, batch_size=20), row("backup", 20, batch_size=5)]
    for control in (primary, backup):
        control.update(rows)
    assert primary.claim_size(SMS, 10, 0.0) == 20
    assert backup.claim_size(SMS, 10, 0.0) == 0
    assert backup.allowed_channels([SMS]) == frozenset()


def test_an_open_circuit_fails_over_to_the_backup() -> None:
    backup = RuntimeControl(["backup"])
    backup.update([row("primary", 10, circuit_state=CircuitState.OPEN), row("backup", 20, batch_size=5)])
    assert backup.claim_size(SMS, 10, 0.0) == 5


def test_disabling_every_provider_stops_the_channel() -> None:
    control = RuntimeControl(["a"])
    control.update([row("a", enabled=False), row("b", circuit_state=CircuitState.OPEN)])
    assert control.active(SMS) is None
    assert control.claim_size(SMS, 10, 0.0) == 0


def test_a_process_with_every_provider_follows_the_active_one() -> None:
    control = RuntimeControl()  # make run: one process, all providers
    control.update([row("a", 10, circuit_state=CircuitState.OPEN), row("b", 20, batch_size=7)])
    active = control.mine(SMS)
    assert active is not None
    assert active.provider == "b"
    assert control.claim_size(SMS, 10, 0.0) == 7


def test_half_open_lets_a_bounded_probe_rate_through() -> None:
    control = RuntimeControl(["a"])
    control.update([row("a", circuit_state=CircuitState.HALF_OPEN, half_open_probes_per_minute=6, batch_size=50)])
    granted = sum(control.claim_size(SMS, 10, t / 10) for t in range(600))  # one minute, every 100 ms
    assert 6 <= granted <= 7


@given(st.integers(1, 120), st.lists(st.floats(0, 30), min_size=1, max_size=50))
def test_probe_budget_never_exceeds_the_rate(per_minute: int, gaps: list[float]) -> None:
    budget, now, granted = ProbeBudget(per_minute, stamp=0.0), 0.0, 0
    for gap in gaps:
        now += gap
        granted += budget.take(1000, now)
    assert granted <= 1 + per_minute * now / 60.0 + 1e-9
