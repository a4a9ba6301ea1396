"""Conditions, control-row drift, quota decisions and settings: the pure parts around them."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound_operator.reconcile import quota
from outbound_operator.reconcile.circuit import Circuit
from outbound_operator.reconcile.conditions import Condition, set_condition, transitions
from outbound_operator.reconcile.control import desired_row, differences
from outbound_operator.reconcile.spec import ChannelProviderSpec, QuotaPolicySpec, parse_duration
from outbound_operator.settings import load_settings
from outbound_sender.domain import CircuitState
from outbound_sender.errors import ConfigError

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def test_last_transition_time_changes_only_with_the_status() -> None:
    first = set_condition([], Condition("Ready", True, "Reconciled", "ok"), 1, T0)
    later = T0 + dt.timedelta(minutes=5)
    same = set_condition(first, Condition("Ready", True, "Reconciled", "still ok"), 2, later)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert (same[0]["observedGeneration"], same[0]["message"]) == (2, "still ok")
    flipped = set_condition(same, Condition("Ready", False, "ReconcileFailed", "boom"), 2, later)
    assert flipped[0]["lastTransitionTime"] == "2026-11-28T12:05:00Z"
    assert [c["type"] for c in transitions(same, flipped)] == ["Ready"]


def test_control_row_differences_name_the_edited_fields() -> None:
    spec = ChannelProviderSpec.of({"channel": "SMS", "provider": "sandbox", "priority": 10})
    circuit = Circuit(CircuitState.CLOSED, T0, "Initialized")
    want = desired_row("p", spec, circuit, 10, 3)
    edited = desired_row("p", spec.model_copy(update={"enabled": False}), circuit, 10, 3)
    assert differences(edited, want) == {"enabled": (False, True)}
    assert differences(want, want) == {}


@pytest.mark.parametrize(
    ("limit", "changed", "expected"),
    [
        (None, False, "Create"),
        (9500, False, "Keep"),
        (4750, False, "ManualOverride"),
        (4750, True, "Restore"),
        (20000, False, "Drift"),
    ],
)
def test_a_lower_manual_limit_is_kept_until_the_spec_changes(limit: int | None, changed: bool, expected: str) -> None:
    spec = QuotaPolicySpec.of({"orgId": "acme", "tier": "Tier10K", "dailyLimit": 9500})
    ledger = None if limit is None else quota.Ledger(0, limit, T0, None)
    assert quota.limit_action(spec, ledger, changed).kind == expected


def test_quota_warning_names_the_highest_threshold_reached() -> None:
    assert quota.warning(69, 100, [70, 85, 95]).status is False
    assert quota.warning(86, 100, [70, 85, 95]).reason == "UsageAbove85Percent"
    assert quota.warning(5, quota.UNLIMITED, [70]).status is False


def test_figures_show_throttled_until_the_reset_when_the_limit_is_reached() -> None:
    reset = T0 + dt.timedelta(hours=3)
    figures = quota.figures(quota.Ledger(100, 100, reset, None), T0)
    assert (figures["used"], figures["remaining"], figures["throttledUntil"]) == (100, 0, "2026-11-28T15:00:00Z")
    elapsed = quota.figures(quota.Ledger(100, 100, T0 - dt.timedelta(seconds=1), None), T0)
    assert (elapsed["used"], elapsed["throttledUntil"]) == (0, None)


@given(st.lists(st.tuples(st.integers(0, 99), st.sampled_from(["ms", "s", "m", "h"])), min_size=1, max_size=3))
def test_durations_add_up(parts: list[tuple[int, str]]) -> None:
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert parse_duration(text) == pytest.approx(sum(n * seconds[u] for n, u in parts))


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_OPERATOR_DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("OUTBOUND_OPERATOR_RECONCILE_INTERVAL_SECONDS", "0")
    with pytest.raises(ConfigError, match="OUTBOUND_OPERATOR_RECONCILE_INTERVAL_SECONDS"):
        load_settings()
    monkeypatch.setenv("OUTBOUND_OPERATOR_RECONCILE_INTERVAL_SECONDS", "5")
    monkeypatch.setenv("OUTBOUND_OPERATOR_NAMESPACES", "a, b")
    assert load_settings().namespaces == ["a", "b"]
