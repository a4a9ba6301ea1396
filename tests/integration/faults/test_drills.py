"""Fault drills (see drill.py): the database SIGKILLed and restarted under three workers, and the
workers themselves killed, paused past their lease, stormed with 500s, hung past the read timeout
and stopped with SIGTERM. Bounds: nothing lost, nothing stuck, no duplicate beyond the sends in
flight at the faults, every worker sending and recording again within 10 s of a fault's end."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.integration.faults.drill import Drill, Report, sandbox_rules
from tests.integration.faults.postmaster import postmaster
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
    for fault in report.faults:
        assert fault.recovery is not None, f"{fault.name}: a worker did not send and record again"
        assert fault.recovery <= RECOVERY_BOUND
    assert set(report.exit_codes.values()) <= {0}, report.exit_codes


@pytest.mark.timeout(400)
async def test_postmaster_killed_and_restarted_under_load() -> None:
    async with postmaster() as server:
        with sandbox_process(latency_ms=150) as sandbox:
            drill = Drill("postmaster SIGKILL", server.dsn, sandbox, SETTINGS)
            try:
                await drill.up("w0", "w1", "w2", wave=WAVE)
                restarts = [
                    ("restarted at once", {}),
                    ("down 2 s", {"down": 2.0}),
                    ("in recovery 3 s", {"in_recovery": 3.0}),
                ]
                for name, how in restarts:
                    await drill.enqueue(WAVE)
                    await drill.progress(30)
                    fault = drill.fault(f"postmaster killed, {name}", await drill.in_flight())
                    await server.restart(**how)
                    await drill.ended(fault, wave=WAVE)
                await drill.settle()
                connections = await drill.value(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'outbound-worker'"
                )
                await drill.stop_all()
            finally:
                drill.kill_all()
            report = await drill.report()
    check(report)
    assert connections == 3 * 3  # each worker holds its listener and its pool of two again


@pytest.mark.timeout(400)
async def test_workers_killed_paused_stormed_hung_and_stopped() -> None:
    async with postmaster() as server:
        with sandbox_process(latency_ms=150) as sandbox:
            drill = Drill("worker and provider faults", server.dsn, sandbox, SETTINGS)
            try:
                await drill.up("w0", "w1", "w2", wave=WAVE)
                await drill.enqueue(WAVE)
                await drill.progress(30)
                fault = drill.fault("worker w0 SIGKILLed", await drill.in_flight("w0"))
                drill.signal("w0", signal.SIGKILL)
                await drill.wait_exit("w0")
                drill.exit_codes.pop("w0")  # killed: its exit code says nothing
                await drill.ended(fault, wave=WAVE)  # the survivors take over
                await drill.up("w3", wave=WAVE)

                await drill.enqueue(WAVE)
                await drill.progress(30)
                fault = drill.fault("worker w1 SIGSTOPped past its lease", await drill.in_flight("w1"))
                drill.signal("w1", signal.SIGSTOP)
                await asyncio.sleep(7)  # lease 5 s: the others take its messages over
                drill.signal("w1", signal.SIGCONT)
                await drill.ended(fault, wave=WAVE)

                await drill.enqueue(WAVE)
                await drill.progress(30)
                fault = drill.fault("provider answers 500 for 2 s", 0)
                await sandbox_rules(sandbox, rules=[{"pattern": ".", "action": "http500"}])
                await asyncio.sleep(2)
                await sandbox_rules(sandbox, rules=[])
                await drill.ended(fault, wave=WAVE)

                await drill.enqueue(WAVE)
                await drill.progress(30)
                fault = drill.fault("provider hangs past the read timeout", 0)
                await sandbox_rules(sandbox, rules=[{"pattern": ".", "action": "timeout"}], timeout_hold_seconds=3)
                await asyncio.sleep(2)
                await sandbox_rules(sandbox, rules=[])
                await drill.ended(fault, wave=WAVE)

                await drill.enqueue(WAVE)
                await drill.progress(30)
                sending = "SELECT count(*) > 0 FROM outbound_message WHERE status = 'SENDING' AND lease_owner = 'w2'"
                await drill.until(sending)
                fault = drill.fault("worker w2 SIGTERMed during sends", 0)
                drill.signal("w2", signal.SIGTERM)
                await drill.wait_exit("w2")
                await drill.ended(fault, wave=WAVE)
                await drill.up("w4", wave=WAVE)

                await drill.settle()
                await drill.stop_all()
            finally:
                drill.kill_all()
            report = await drill.report()
    check(report)
