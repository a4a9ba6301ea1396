"""The provider_control row of a ChannelProvider (pure): what the workers must see, and drift.

The row is a function of the spec (enabled, priority, mode, probes) and of the operator's
own decisions (circuit state, batch size), which the operator also keeps in the resource's status.
A row that differs from that function while the spec's generation did not change was edited by
hand: drift, corrected and reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from outbound_operator.reconcile.circuit import Circuit
from outbound_operator.reconcile.spec import ChannelProviderSpec

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
)  # messages_per_second: written NULL, read by nothing (a row from an older operator is no drift)


@dataclass(frozen=True, slots=True)
class ControlRow:
    provider: str
    channel: str
    kind: str
    enabled: bool
    priority: int
    circuit_mode: str
    circuit_state: str
    circuit_since: dt.datetime
    circuit_reason: str | None
    half_open_probes_per_minute: int
    batch_size: int
    messages_per_second: float | None
    observed_generation: int | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ControlRow:
        values = {f.name: record[f.name] for f in fields(cls)}
        mps = values["messages_per_second"]
        values["messages_per_second"] = float(mps) if mps is not None else None
        return cls(**values)

    def as_args(self) -> tuple[Any, ...]:
        return tuple(asdict(self).values())


def desired_row(
    provider: str, spec: ChannelProviderSpec, circuit: Circuit, batch_size: int, generation: int
) -> ControlRow:
    return ControlRow(
        provider=provider,
        channel=spec.channel,
        kind=spec.provider,
        enabled=spec.enabled,
        priority=spec.priority,
        circuit_mode=spec.circuit_breaker.mode,
        circuit_state=circuit.state.value,
        circuit_since=circuit.since,
        circuit_reason=circuit.reason,
        half_open_probes_per_minute=spec.circuit_breaker.half_open_probes_per_minute,
        batch_size=batch_size,
        messages_per_second=None,  # no ChannelProvider field sets a send rate (the column stays NULL)
        observed_generation=generation,
    )


def differences(actual: ControlRow, desired: ControlRow) -> dict[str, tuple[Any, Any]]:
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
