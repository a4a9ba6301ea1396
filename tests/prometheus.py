"""A real Prometheus for the tests: Debian's `prometheus` package (prometheus + promtool).

`binaries()` finds both on PATH; when they are missing and we run as root with apt-get, it installs
the package (`apt-get install -y prometheus`, after `apt-get update` if the first try fails);
otherwise it fails the test saying what to install. `PrometheusServer` runs one on a free loopback
port with its own temporary storage and a short scrape interval, and queries its HTTP API.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from outbound_sender.embedded import free_port, remove_tree

INSTALL_HINT = (
    "Prometheus is needed for this test: install Debian's package (`apt-get install -y prometheus`, "
    "which provides /usr/bin/prometheus and /usr/bin/promtool) or put both binaries on PATH"
)


@dataclass(frozen=True)
class Binaries:
    prometheus: Path
    promtool: Path


def _found() -> Binaries | None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return Binaries(Path(prometheus), Path(promtool))
    return None


def _apt_install() -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600, check=False)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600, check=False)
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600, check=False)
    return result.stderr[-2000:]


@functools.cache
def _locate() -> Binaries | str:
    found = _found()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"{INSTALL_HINT} (not root or no apt-get here, so the test cannot install it)"
    error = _apt_install()
    return _found() or f"{INSTALL_HINT}; apt-get install failed:\n{error}"


def binaries() -> Binaries:
    located = _locate()
    if isinstance(located, str):
        pytest.fail(located, pytrace=False)
    return located


@dataclass
class PrometheusServer:
    """One Prometheus scraping `targets` (host:port) every `interval` with `rule_files` loaded."""

    targets: list[str]
    rule_files: list[Path] = field(default_factory=list)
    interval: str = "1s"
    port: int = 0
    folder: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> dict[str, Any]:
        job = {
            "job_name": "outbound-sender",
            "metrics_path": "/actuator/prometheus",
            "static_configs": [{"targets": self.targets}],
        }
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [job],
        }

    def start(self) -> PrometheusServer:
        binary = binaries().prometheus
        self.folder = Path(tempfile.mkdtemp(prefix="outbound-prometheus-"))
        config = self.folder / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config()))
        self.port = free_port()
        args = [str(binary), f"--config.file={config}", f"--storage.tsdb.path={self.folder / 'data'}"]
        args += [f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        log = (self.folder / "prometheus.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus did not become ready: {self.log_tail()}")

    def log_tail(self) -> str:
        log = self.folder / "prometheus.log" if self.folder else None
        return log.read_text()[-3000:] if log and log.exists() else ""

    async def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query: {"status", "data"} or {"status": "error", "error"}."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.url}/api/v1/query", params={"query": expr})
        answer: dict[str, Any] = response.json()
        return answer

    async def get(self, path: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.url}{path}")
        answer: dict[str, Any] = response.json()
        return answer

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.folder is not None:
            remove_tree(self.folder)
