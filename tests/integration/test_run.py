"""`outbound run` sends its demo messages only where they cannot reach anyone: in a sandbox mode, with
the worker on, and only on the channels the worker sends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from outbound_sender.embedded import free_port
from outbound_sender.providers import registry
from tests.processes import read_until

API_HOWTO = "HTTP API (org demo"  # printed once the demo (if any) is over


@contextmanager
def outbound_run(db_dsn: str, state: Path, **settings: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    env = {
        **os.environ,
        "DATABASE_URL": db_dsn,
        "OUTBOUND_STATE_DIR": str(state),
        "OUTBOUND_HTTP_PORT": str(free_port()),
        "OUTBOUND_PROVIDER_SANDBOX_URL": f"http://127.0.0.1:{free_port()}",
        **{f"OUTBOUND_SANDBOX_{p.name.upper()}_PORT": str(free_port()) for p in registry.sandboxed()},
        "OUTBOUND_LOG_LEVEL": "WARNING",
    }
    env.update({key.upper(): value for key, value in settings.items()})
    argv = [sys.executable, "-m", "outbound_sender.cli", "run"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        yield process, lines
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        assert process.stdout is not None
        lines.extend(process.stdout.readlines())


async def _statuses(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT channel, status FROM outbound_message ORDER BY id")
    finally:
        await conn.close()
    return {row["channel"]: row["status"] for row in rows}


async def test_live_mode_sends_no_demo_message(db_dsn: str, tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"  # the 'real' Twilio: nothing must be sent to it
    live = {
        "outbound_provider_kind": "live",
        "outbound_providers_enabled": "twilio",
        "twilio_account_sid": "AC" + "0" * 32,
        "twilio_auth_token": "live-token",
        "twilio_from_number": "+14155552671",
        "twilio_base_url": unreachable,
    }
    with outbound_run(db_dsn, tmp_path, **live) as (process, lines):
        output = read_until(process, API_HOWTO, seen=lines)
        assert "OUTBOUND_PROVIDER_KIND=live: no demo messages" in output
        assert await _statuses(db_dsn) == {}
        assert process.poll() is None


async def test_a_disabled_worker_claims_nothing_and_sends_no_demo(db_dsn: str, tmp_path: Path) -> None:
    with outbound_run(db_dsn, tmp_path, outbound_worker_enabled="false") as (process, lines):
        output = read_until(process, API_HOWTO, seen=lines)
        assert "OutboundJobWorker disabled by OUTBOUND_WORKER_ENABLED=false; not claiming" in output
        assert "demo messages went through" not in output
        assert await _statuses(db_dsn) == {}
        assert process.poll() is None


async def test_demo_messages_only_for_the_channels_that_are_on(db_dsn: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with outbound_run(db_dsn, tmp_path, whatsapp_provider_enabled="false") as (process, lines):
        output = read_until(process, API_HOWTO, seen=lines)
        assert "no demo message for WHATSAPP: the worker does not send it" in output
        assert await _statuses(db_dsn) == {"SMS": "SENT", "EMAIL": "SENT"}
        assert process.poll() is None
    assert time.monotonic() - started < 60, "the demo waited for a channel that is off"
