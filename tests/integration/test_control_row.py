"""One provider-control row for both planes: what the operator writes, the workers read as the
same `domain.ProviderControl`, in the same circuit vocabulary."""

from __future__ import annotations

import dataclasses
import datetime as dt

from outbound_operator.db import Database
from outbound_operator.reconcile.circuit import Circuit
from outbound_operator.reconcile.control import desired_row, differences
from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_sender.domain import Channel, CircuitMode, CircuitState
from outbound_sender.store.gateway import PgWorkerGateway

SINCE = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


async def test_the_row_the_operator_writes_is_the_row_the_worker_reads(db_dsn: str) -> None:
    spec = ChannelProviderSpec.of(
        {"channel": "SMS", "provider": "twilio", "priority": 20, "circuitBreaker": {"mode": "ForceClosed"},
         "rateLimit": {"messagesPerSecond": 3}}
    )  # fmt: skip
    written = desired_row("twilio", spec, Circuit(CircuitState.HALF_OPEN, SINCE, "CoolDownElapsed"), 25, 7)
    database = await Database.connect(db_dsn)
    gateway = await PgWorkerGateway.open(db_dsn)
    try:
        await database.write_control(written)
        read_back = await database.control_row("twilio")
        [seen_by_worker] = await gateway.control_rows()
    finally:
        await gateway.close()
        await database.close()
    assert read_back is not None
    assert differences(read_back, written) == {}
    assert (seen_by_worker.channel, seen_by_worker.circuit_state, seen_by_worker.circuit_mode) == (
        Channel.SMS, CircuitState.HALF_OPEN, CircuitMode.FORCE_CLOSED,
    )  # fmt: skip
    assert seen_by_worker == dataclasses.replace(written, circuit_reason=None, observed_generation=None)
