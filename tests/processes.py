"""Real sender processes for tests: `outbound sandbox` and `outbound worker` as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from outbound_sender.embedded import free_port


def outbound(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "outbound_sender.cli", *args]
    return subprocess.Popen(command, env={**os.environ, **(env or {})}, **popen)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout)


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


@contextmanager
def sandbox_process(latency_ms: float = 20) -> Iterator[str]:
    """A generic sandbox provider server; yields its base URL."""
    port = free_port()
    process = outbound("sandbox", "--port", str(port), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_sandbox/config")
        config = httpx.get(url + "/_sandbox/config").json()
        httpx.put(url + "/_sandbox/config", json={**config, "latency_ms": latency_ms}).raise_for_status()
        yield url
    finally:
        stop(process)


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 120, seen: list[str] | None = None) -> str:
    """What the process printed up to the line with `marker` (also appended to `seen`); fails if the
    process ends first or the deadline passes."""
    assert process.stdout is not None
    seen = [] if seen is None else seen
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed (exit status {process.poll()}); output was:\n{''.join(seen)}")


def worker_env(dsn: str, sandbox_url: str, **settings: str) -> dict[str, str]:
    env = {"DATABASE_URL": dsn, "OUTBOUND_PROVIDER_KIND": "generic", "OUTBOUND_PROVIDER_SANDBOX_URL": sandbox_url}
    env["OUTBOUND_LOG_LEVEL"] = "WARNING"
    env["OUTBOUND_WORKER_PROCESSES"] = "1"  # one worker process unless the test asks for more, whatever the CPUs
    env.update({key.upper(): value for key, value in settings.items()})
    return env
