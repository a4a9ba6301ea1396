"""Fault drills (see drill.py): the database SIGKILLed and restarted under three workers, and the
workers themselves killed, paused past their lease, stormed with 500s, hung past the read timeout
and stopped with SIGTERM. Bounds: nothing lost, nothing stuck, no duplicate beyond the sends in
flight at the faults, every worker sending and recording again within 10 s of a fault's end."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from outbound_sender.embedded import remove_tree
from outbound_sender.store.gateway import APPLICATION
from tests.integration.faults.drill import Drill, Report, sandbox_rules
from tests.integration.faults.postmaster import Postmaster, postmaster
from tests.processes import sandbox_process

RECOVERY_BOUND = 10.0
WAVE = 90  # messages enqueued before each fault and after it
SETTINGS = {
    "outbound_worker_batch_size": "8",
    "outbound_worker_max_in_flight": "8",
    "outbound_worker_lease_seconds": "5",
    "outbound_worker_recovery_interval_ms": "250",
    "outbound_worker_poll_interval_ms": "500",
    "outbound_worker_shutdown_grace_seconds": "10",
    "outbound_provider_connect_timeout_seconds": "0.5",
    "outbound_provider_read_timeout_seconds": "1",
    "outbound_retry_base_ms": "200",
    "outbound_retry_max_ms": "1000",
    "outbound_circuit_open_seconds": "1",
}


def check(report: Report) -> None:
    print("\n" + report.render())
    assert report.lost == 0
    assert report.stuck == 0
    assert report.duplicates <= report.in_flight_at_faults
    assert report.deferral_rows == 0
    for fault in report.faults:
        assert fault.recovery is not None, f"{fault.name}: a worker did not send and record again"
        assert fault.recovery <= RECOVERY_BOUND
    assert set(report.exit_codes.values()) <= {0}, report.exit_codes


@contextlib.asynccontextmanager
async def drilling(scenario: str) -> AsyncIterator[tuple[Drill, Postmaster, str]]:
    """A dedicated postmaster, the generic sandbox, and a drill whose workers never outlive it."""
    async with postmaster() as server:
        with sandbox_process(latency_ms=150) as sandbox:
            drill = Drill(scenario, server.dsn, sandbox, SETTINGS)
            try:
                yield drill, server, sandbox
            finally:
                drill.kill_all()
    remove_tree(drill.logs)  # left behind when the drill failed: the workers' logs explain it


async def before_fault(drill: Drill) -> None:
    await drill.enqueue(WAVE)
    await drill.progress(30)


@pytest.mark.timeout(400)
async def test_postmaster_killed_and_restarted_under_load() -> None:
    restarts = [("restarted at once", {}), ("down 2 s", {"down": 2.0}), ("in recovery 3 s", {"in_recovery": 3.0})]
    async with drilling("postmaster SIGKILL") as (drill, server, _):
        await drill.up("w0", "w1", "w2", wave=WAVE)
        for name, how in restarts:
            await before_fault(drill)
            fault = drill.fault(f"postmaster killed, {name}", await drill.in_flight())
            await server.restart(**how)
            await drill.ended(fault, wave=WAVE)
        await drill.settle()
        connections = await worker_connections(drill, want=3 * 3, within=20)
        await drill.stop_all()
        check(await drill.report())
        assert connections == 3 * 3  # each worker holds its listener and its pool of two again


async def worker_connections(drill: Drill, want: int, within: float) -> int:
    """The workers' connections once they reach `want`, or as many as there are after `within` s
    (a pool re-opens its connections as it uses them, the listener as soon as it notices)."""
    deadline = time.monotonic() + within
    while True:
        count = int(await drill.value("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APPLICATION))
        if count == want or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.2)


async def kill_worker(drill: Drill, name: str) -> None:
    fault = drill.fault(f"worker {name} SIGKILLed", await drill.in_flight(name))
    drill.signal(name, signal.SIGKILL)
    await drill.wait_exit(name)
    drill.exit_codes.pop(name)  # killed: its exit code says nothing
    await drill.ended(fault, wave=WAVE)  # the survivors take over


async def pause_worker(drill: Drill, name: str) -> None:
    fault = drill.fault(f"worker {name} SIGSTOPped past its lease", await drill.in_flight(name))
    drill.signal(name, signal.SIGSTOP)
    await asyncio.sleep(7)  # lease 5 s: the others take its messages over
    drill.signal(name, signal.SIGCONT)
    await drill.ended(fault, wave=WAVE)


async def provider_fault(drill: Drill, sandbox: str, name: str, **config: Any) -> None:
    fault = drill.fault(name, 0)  # a failed or unanswered call is not accepted: nothing to duplicate
    await sandbox_rules(sandbox, **config)
    await asyncio.sleep(2)
    await sandbox_rules(sandbox, rules=[])
    await drill.ended(fault, wave=WAVE)


async def terminate_worker(drill: Drill, name: str) -> None:
    await drill.until("SELECT count(*) > 0 FROM outbound_message WHERE status = 'SENDING' AND lease_owner = $1", name)
    fault = drill.fault(f"worker {name} SIGTERMed during sends", 0)  # it drains: nothing to duplicate
    drill.signal(name, signal.SIGTERM)
    await drill.wait_exit(name)
    await drill.ended(fault, wave=WAVE)


@pytest.mark.timeout(400)
async def test_workers_killed_paused_stormed_hung_and_stopped() -> None:
    async with drilling("worker and provider faults") as (drill, _, sandbox):
        await drill.up("w0", "w1", "w2", wave=WAVE)
        await before_fault(drill)
        await kill_worker(drill, "w0")
        await drill.up("w3", wave=WAVE)
        await before_fault(drill)
        await pause_worker(drill, "w1")
        await before_fault(drill)
        await provider_fault(
            drill, sandbox, "provider answers 500 for 2 s", rules=[{"pattern": ".", "action": "http:500"}]
        )
        await before_fault(drill)
        hang = {"rules": [{"pattern": ".", "action": "timeout"}], "timeout_hold_seconds": 3}
        await provider_fault(drill, sandbox, "provider hangs past the read timeout", **hang)
        await before_fault(drill)
        await terminate_worker(drill, "w2")
        await drill.up("w4", wave=WAVE)
        await drill.settle()
        await drill.stop_all()
        check(await drill.report())
