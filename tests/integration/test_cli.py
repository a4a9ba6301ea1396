"""The `outbound` command as a user runs it: make run's pipeline, enqueue --wait, embedded servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from outbound_sender.embedded import free_port
from outbound_sender.providers import registry
from outbound_sender.store.db import connect
from tests.processes import outbound, read_until, stop


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "outbound_sender.cli", *args]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_outbound_run_sends_a_demo_message_and_enqueue_waits_for_sent(db_dsn: str) -> None:
    env = {
        "DATABASE_URL": db_dsn,
        "OUTBOUND_PROVIDER_SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
        "OUTBOUND_HTTP_PORT": str(free_port()),
        "OUTBOUND_METRICS_PORT": str(free_port()),
        **{f"OUTBOUND_SANDBOX_{p.name.upper()}_PORT": str(free_port()) for p in registry.sandboxed()},
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "outbound_sender.cli", "run"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = read_until(run, "Ready.", timeout=60)
        assert "status=SENT" in output
        assert "WhatsApp quota (outbound quota):" in output
        sent = _cli("enqueue", "--channel", "SMS", "--to", "+14155552671", "--body", "hi", "--wait", env=env)
        assert "status=SENT" in sent.stdout, sent.stdout + sent.stderr
        failed = _cli("enqueue", "--channel", "SMS", "--to", "+14155550001", "--body", "x", "--wait", env=env)
        assert "error_code=INVALID_PHONE_NUMBER" in failed.stdout
        template = ["--channel", "WHATSAPP", "--to", "+33612345678", "--template", "appointment_reminder"]
        positional = ["--language", "en_US", "--param", "body+=Tuesday", "--param", "body+=10:30", "--wait"]
        reminder = _cli("enqueue", *template, *positional, env=env)  # the sandbox wants two body parameters
        assert "status=SENT" in reminder.stdout, reminder.stdout + reminder.stderr
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


def test_enqueue_refuses_what_the_api_refuses_and_stores_nothing(db_dsn: str) -> None:
    env = {"DATABASE_URL": db_dsn}
    refusals = {
        ("--channel", "SMS", "--to", "+15558675310", "--body", "hi"): "--to: is not a valid phone number",
        (
            "--channel",
            "EMAIL",
            "--to",
            "not-an-address",
            "--subject",
            "s",
            "--body",
            "b",
        ): "--to: is not a valid e-mail",
        ("--channel", "WHATSAPP", "--to", "+33612345678", "--template", "hello_world"): "--language: is required",
        (
            "--channel",
            "WHATSAPP",
            "--to",
            "+33612345678",
            "--template",
            "hello_world",
            "--language",
            "en_US",
            "--param",
            "name+=Ada",
        ): "--param name: a list (positional parameters) is taken only for header and body",
        ("--channel", "SMS", "--to", "+14155552671", "--body", "x", "--param", "a"): "expected NAME=VALUE",
    }
    for args, reason in refusals.items():
        done = _cli("enqueue", *args, env=env)
        assert (done.returncode, reason in done.stderr) == (2, True), done.stderr
    assert _cli("status", env=env).stdout == ""
    check = _cli("check-provider", "twilio", "--send-to", "+15558675310", env={"OUTBOUND_PROVIDER_KIND": "sandbox"})
    assert (check.returncode, check.stderr.strip()) == (
        2,
        "outbound: --send-to: is not a valid phone number for country code +1",
    )
    named = ["--template", "appointment_reminder", "--language", "fr", "--param", "day=mardi", "--param", "body+=x"]
    done = _cli("enqueue", "--channel", "WHATSAPP", "--to", "+33612345678", *named, env=env)
    assert done.returncode == 0, done.stderr

    async def stored() -> tuple[str, str, dict[str, object]]:
        conn = await connect(db_dsn)
        try:
            row = await conn.fetchrow("SELECT to_recipient, template_language, template_params FROM outbound_message")
        finally:
            await conn.close()
        assert row is not None
        return row["to_recipient"], row["template_language"], row["template_params"]

    assert asyncio.run(stored()) == ("+33612345678", "fr", {"day": "mardi", "body": ["x"]})


def test_invalid_settings_stop_start_up_with_a_clear_message() -> None:
    done = _cli("status", env={"OUTBOUND_WORKER_BATCH_SIZE": "lots"})
    assert done.returncode == 2
    assert "OUTBOUND_WORKER_BATCH_SIZE='lots'" in done.stderr


def test_worker_disabled_by_the_runbook_switch_claims_nothing(db_dsn: str) -> None:
    enqueue = _cli("enqueue", "--channel", "SMS", "--to", "+14155552671", "--body", "x", env={"DATABASE_URL": db_dsn})
    assert enqueue.returncode == 0
    env = {"DATABASE_URL": db_dsn, "OUTBOUND_WORKER_ENABLED": "false", "OUTBOUND_PROVIDER_KIND": "sandbox"}
    argv = [sys.executable, "-m", "outbound_sender.cli", "worker"]
    worker = subprocess.Popen(
        argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    read_until(worker, "OUTBOUND_WORKER_ENABLED=false; not claiming", timeout=60)  # signal handlers are set
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    status = _cli("status", env={"DATABASE_URL": db_dsn})
    assert "QUEUED     1" in status.stdout


def test_a_worker_process_serves_health_readiness_and_metrics(db_dsn: str) -> None:
    import httpx

    port = free_port()
    env = {"DATABASE_URL": db_dsn, "OUTBOUND_HTTP_PORT": str(port), "OUTBOUND_PROVIDER_KIND": "null"}
    worker = outbound("worker", env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60  # a pod of several worker processes is ready once all started
        while time.monotonic() < deadline:
            try:
                if (ready := httpx.get(base + "/readyz", timeout=1)).status_code == 200:
                    break
            except httpx.TransportError:
                pass
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


def test_enqueue_wait_shows_where_the_message_is_on_a_terminal(db_dsn: str) -> None:
    """While --wait waits, a terminal sees the message's status (rich's live line on stderr)."""
    import threading

    env = {**os.environ, "DATABASE_URL": db_dsn, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "TERM": "xterm"}
    argv = [sys.executable, "-m", "outbound_sender.cli", "enqueue", "--channel", "SMS", "--to", "+14155552671"]
    waiting = subprocess.Popen(
        [*argv, "--body", "hi", "--wait"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: list[str] = []
    stream = waiting.stderr
    assert stream is not None
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: stream.read(1), "")), daemon=True)
    reader.start()

    async def finish_when_shown() -> None:
        conn = await connect(db_dsn)
        try:
            deadline = time.monotonic() + 60
            while "QUEUED, attempt 0/5" not in "".join(seen):
                assert time.monotonic() < deadline, "".join(seen)
                assert waiting.poll() is None, "".join(seen)
                await asyncio.sleep(0.05)
            await conn.execute("UPDATE outbound_message SET status = 'SENT', sent_at = now()")
        finally:
            await conn.close()

    asyncio.run(finish_when_shown())
    stdout, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0
    assert "status=SENT" in stdout
