"""Supervision of the worker's long-lived tasks: database errors a restart produces are survived
(and no message is claimed while results cannot be written); anything else stops the process with
a non-zero exit code, so Kubernetes restarts it instead of leaving a worker that sends but never
records."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
import pytest

from outbound_sender.domain import CallResult
from outbound_sender.store import gateway
from outbound_sender.worker.service import OutboundJobWorker
from tests.processes import outbound, sandbox_process, stop, worker_env
from tests.workers import ScriptedProvider, enqueue_sms, running_worker, statuses, wait_for

# What a PostgreSQL restart looks like from asyncpg, in the order a restart produces them.
RESTART_ERRORS: list[BaseException] = [
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ConnectionRefusedError(111, "Connect call failed"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.InternalClientError("protocol is in an unexpected state"),
    asyncpg.InterfaceError("cannot perform operation: connection is closed"),
]
MESSAGES = 60
BATCH = 10


async def test_result_writer_survives_a_restart_and_claims_wait_for_it(
    db: asyncpg.Connection, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = list(RESTART_ERRORS)
    workers: list[OutboundJobWorker] = []
    claimed_at_first_error: list[int] = []
    claimed_when_writing_again: list[int] = []
    real_arrays = gateway.as_arrays

    def failing_arrays(batch: list[CallResult]) -> list[list[object]]:
        """Called by the result writer for each write: fail there once the first results are in."""
        worker = workers[0]
        if errors and worker.completed_total >= BATCH:
            if not claimed_at_first_error:
                claimed_at_first_error.append(worker.claimed_total)
            raise errors.pop(0)
        if claimed_at_first_error and not claimed_when_writing_again:
            claimed_when_writing_again.append(worker.claimed_total)
        return real_arrays(batch)

    monkeypatch.setattr(gateway, "as_arrays", failing_arrays)
    provider = ScriptedProvider(latency=0.02)
    await enqueue_sms(db, MESSAGES)
    async with running_worker(db_dsn, provider, batch_size=BATCH, max_in_flight=BATCH) as worker:
        workers.append(worker)
        sent = "SELECT count(*) = $1 FROM outbound_message WHERE status = 'SENT'"
        await wait_for(db, sent, MESSAGES, timeout=60)
    assert not errors, "every restart error was met"
    # One claim may have been under way when the first write failed; none started after it.
    assert claimed_when_writing_again[0] - claimed_at_first_error[0] <= BATCH
    assert set(provider.calls.values()) == {1}, "no message was sent twice"
    assert await statuses(db) == {"SENT": MESSAGES}


async def test_worker_process_exits_non_zero_when_a_task_cannot_go_on(db: asyncpg.Connection, db_dsn: str) -> None:
    """A completer that cannot write (here: a trigger refuses attempt rows, not a restart) stops
    the process."""
    await db.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RAISE EXCEPTION 'attempts refused by the test'; END $$"
    )
    await db.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbound_attempt FOR EACH ROW EXECUTE FUNCTION refuse()")
    await enqueue_sms(db, 5)
    with sandbox_process(latency_ms=5) as sandbox:
        worker = outbound("worker", env=worker_env(db_dsn, sandbox), stderr=subprocess.PIPE)
        try:
            code = await asyncio.to_thread(worker.wait, 60)
        finally:
            stop(worker)
        assert worker.stderr is not None
        stderr = worker.stderr.read().decode()
    assert code != 0
    assert "worker task 'completer' ended" in stderr
    assert "attempts refused by the test" in stderr
