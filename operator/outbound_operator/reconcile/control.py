"""The provider_control row of a ChannelProvider (pure): what the workers must see, and drift.

The row is the sender's `domain.ProviderControl`, the one type the operator writes and the workers
read, with the same circuit vocabulary (`domain.CircuitState`, `domain.CircuitMode`).

The row is a function of the spec (enabled, priority, mode, probes) and of the operator's
own decisions (circuit state, batch size), which the operator also keeps in the resource's status.
A row that differs from that function while the spec's generation did not change was edited by
hand: drift, corrected and reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from outbound_operator.reconcile.circuit import Circuit
from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_sender.domain import Channel, ProviderControl

# Compared for drift; observed_generation only says which spec the row was written for.
COMPARED = (
    "channel",
    "kind",
    "enabled",
    "priority",
    "circuit_mode",
    "circuit_state",
    "circuit_since",
    "circuit_reason",
    "half_open_probes_per_minute",
    "batch_size",
)


def desired_row(
    provider: str, spec: ChannelProviderSpec, circuit: Circuit, batch_size: int, generation: int
) -> ProviderControl:
    return ProviderControl(
        provider=provider,
        channel=Channel(spec.channel),
        kind=spec.provider,
        enabled=spec.enabled,
        priority=spec.priority,
        circuit_mode=spec.circuit_breaker.mode,
        circuit_state=circuit.state,
        circuit_since=circuit.since,
        circuit_reason=circuit.reason,
        half_open_probes_per_minute=spec.circuit_breaker.half_open_probes_per_minute,
        batch_size=batch_size,
        observed_generation=generation,
    )


def differences(actual: ProviderControl, desired: ProviderControl) -> dict[str, tuple[Any, Any]]:
    """Compared fields that differ: {field: (actual, desired)}."""
    return {
        name: (getattr(actual, name), getattr(desired, name))
        for name in COMPARED
        if getattr(actual, name) != getattr(desired, name)
    }


def describe(diff: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{name} {_text(old)} -> {_text(new)}" for name, (old, new) in sorted(diff.items()))


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)
