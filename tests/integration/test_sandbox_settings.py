"""`outbound sandbox --providers` serves each provider's sandbox where OUTBOUND_SANDBOX_HOST and
OUTBOUND_SANDBOX_<NAME>_PORT say (the addresses `outbound run` points the clients at)."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest

from outbound_sender.embedded import free_port
from outbound_sender.providers import registry
from tests.processes import outbound, stop

HOST = "127.0.0.2"  # a loopback address other than the default 127.0.0.1
ATTEMPTS = 3


def _port_on(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _serving(process: subprocess.Popen[bytes], ports: dict[str, int], timeout: float = 60) -> bool:
    """True once every port answers on HOST; False if the process ended first (a port it was given
    was taken by another process between our choice and its bind: a new choice is made)."""
    deadline = time.monotonic() + timeout
    waiting = set(ports.values())
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        for port in sorted(waiting):
            try:
                httpx.get(f"http://{HOST}:{port}/", timeout=1)  # any answer: the sandbox is there
                waiting.discard(port)
            except httpx.TransportError:
                time.sleep(0.05)
    assert not waiting, f"no answer within {timeout} s on {sorted(waiting)}"
    return True


def test_each_provider_sandbox_listens_on_the_host_and_port_from_the_environment() -> None:
    for _ in range(ATTEMPTS):
        ports = {p.name: _port_on(HOST) for p in registry.sandboxed()}
        env = {f"OUTBOUND_SANDBOX_{name.upper()}_PORT": str(port) for name, port in ports.items()}
        env |= {"OUTBOUND_SANDBOX_HOST": HOST, "OUTBOUND_LOG_LEVEL": "WARNING"}
        process = outbound("sandbox", "--providers", "--port", str(free_port()), env=env, stdout=subprocess.DEVNULL)
        try:
            if not _serving(process, ports):
                continue  # it ended: a port was taken before it could bind it
            for port in ports.values():
                with pytest.raises(httpx.ConnectError):  # only there
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            assert stop(process) == 0
            return
        finally:
            if process.poll() is None:
                stop(process)
    pytest.fail(f"the sandboxes could not bind their ports in {ATTEMPTS} attempts")
