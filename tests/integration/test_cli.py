"""The `outbound` command as a user runs it: make run's pipeline, enqueue --wait, embedded servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from outbound_sender.embedded import free_port
from tests.processes import outbound, stop


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    pytest.fail(f"{marker!r} not printed; output was:\n{''.join(seen)}")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "outbound_sender.cli", *args]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_outbound_run_sends_a_demo_message_and_enqueue_waits_for_sent(db_dsn: str) -> None:
    env = {
        "DATABASE_URL": db_dsn,
        "OUTBOUND_PROVIDER_SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
        "OUTBOUND_HTTP_PORT": str(free_port()),
        "OUTBOUND_METRICS_PORT": str(free_port()),
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "outbound_sender.cli", "run"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _read_until(run, "Ready.")
        assert "status=SENT" in output
        assert "WhatsApp quota (outbound quota):" in output
        sent = _cli("enqueue", "--channel", "SMS", "--to", "+15557654321", "--body", "hi", "--wait", env=env)
        assert "status=SENT" in sent.stdout, sent.stdout + sent.stderr
        failed = _cli("enqueue", "--channel", "SMS", "--to", "+15550000001", "--body", "x", "--wait", env=env)
        assert "error_code=INVALID_PHONE_NUMBER" in failed.stdout
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(30)
    assert run.returncode == 0


def test_without_database_url_an_embedded_server_is_started_in_the_state_folder(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["OUTBOUND_STATE_DIR"] = str(tmp_path / "state")
    command = [sys.executable, "-m", "outbound_sender.cli", "migrate"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "embedded PostgreSQL 18 started" in done.stdout
    assert "migrations applied: 0001_initial" in done.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "none (schema is current)" in again.stdout
    assert not (tmp_path / "state" / "postgres" / "postmaster.pid").exists(), "the server was left running"


def test_invalid_settings_stop_start_up_with_a_clear_message() -> None:
    done = _cli("status", env={"OUTBOUND_WORKER_BATCH_SIZE": "lots"})
    assert done.returncode == 2
    assert "OUTBOUND_WORKER_BATCH_SIZE='lots'" in done.stderr


def test_worker_disabled_by_the_runbook_switch_claims_nothing(db_dsn: str) -> None:
    enqueue = _cli("enqueue", "--channel", "SMS", "--to", "+15557654321", env={"DATABASE_URL": db_dsn})
    assert enqueue.returncode == 0
    worker = outbound("worker", env={"DATABASE_URL": db_dsn, "OUTBOUND_WORKER_ENABLED": "false"})
    time.sleep(2)
    assert stop(worker) == 0
    status = _cli("status", env={"DATABASE_URL": db_dsn})
    assert "QUEUED     1" in status.stdout


def test_a_worker_process_serves_health_readiness_and_metrics(db_dsn: str) -> None:
    import httpx

    port = free_port()
    env = {"DATABASE_URL": db_dsn, "OUTBOUND_HTTP_PORT": str(port), "OUTBOUND_PROVIDER_KIND": "null"}
    worker = outbound("worker", env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(base + "/readyz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready.status_code == 200
        assert httpx.get(base + "/healthz").status_code == 200
        assert "outbound_worker_in_flight" in httpx.get(base + "/actuator/prometheus").text
        assert httpx.get(base + "/v1/messages").status_code == 404  # no message API on worker pods
    finally:
        assert stop(worker) == 0


def test_outbound_quota_shows_the_runbook_view(db_dsn: str) -> None:
    env = {"DATABASE_URL": db_dsn}
    assert "no WhatsApp quota in use yet" in _cli("quota", env=env).stdout
    import asyncio

    import asyncpg

    async def seed() -> None:
        conn = await asyncpg.connect(db_dsn)
        await conn.execute(
            "INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit) VALUES ('acme', 912, 1000)"
        )
        await conn.close()

    asyncio.run(seed())
    shown = _cli("quota", "--org", "acme", env=env).stdout
    assert "acme" in shown
    assert "used 912/1000 (91.2%)" in shown
    assert "remaining 88" in shown
