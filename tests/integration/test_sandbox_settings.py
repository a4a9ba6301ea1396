"""`outbound sandbox --providers` serves each provider's sandbox where OUTBOUND_SANDBOX_HOST and
OUTBOUND_SANDBOX_<NAME>_PORT say (the addresses `outbound run` points the clients at)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from outbound_sender.embedded import free_port
from outbound_sender.providers import registry
from tests.processes import outbound, stop, wait_http

HOST = "127.0.0.2"  # a loopback address other than the default 127.0.0.1


def test_each_provider_sandbox_listens_on_the_host_and_port_from_the_environment() -> None:
    ports = {p.name: free_port() for p in registry.sandboxed()}
    env = {f"OUTBOUND_SANDBOX_{name.upper()}_PORT": str(port) for name, port in ports.items()}
    env |= {"OUTBOUND_SANDBOX_HOST": HOST, "OUTBOUND_LOG_LEVEL": "WARNING"}
    process = outbound("sandbox", "--providers", "--port", str(free_port()), env=env, stdout=subprocess.DEVNULL)
    try:
        for port in ports.values():
            wait_http(f"http://{HOST}:{port}/", timeout=60)  # any answer: the sandbox is there
            with pytest.raises(httpx.ConnectError):  # and only there
                httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    finally:
        assert stop(process) == 0
