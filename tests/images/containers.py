"""The images of the current sources, run as containers the way the chart runs their pods.

`make images` (a prerequisite of `make test`) builds them; :func:`built_images` finds them by the
hash of their inputs (`hack/images.sh paths`) and fails when they are stale. A :class:`Container`
is `podman --runtime runc run --network=host` with the chart's security context: uid/gid 10001,
read-only root filesystem with a /tmp tmpfs, every capability dropped, no privilege escalation.
It is stopped with SIGTERM through podman's signal proxy, and removed; :meth:`Container.stop`
checks that neither the container nor its conmon nor the podman client is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES_SCRIPT = REPO_ROOT / "hack" / "images.sh"
NAME_PREFIX = "outbound-test-"
RUN_AS = "10001:10001"


@dataclass(frozen=True)
class Images:
    sender: str
    operator: str
    env: dict[str, str]  # the environment podman runs with (CONTAINERS_CONF)

    def podman(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )


def built_images() -> Images:
    """The sender and operator images built from the sources as they are now."""
    result = subprocess.run(
        [str(IMAGES_SCRIPT), "paths"],
        env={**os.environ, "CONTAINER_ENGINE": "podman"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        pytest.fail(f"hack/images.sh paths failed: {result.stderr.strip()}", pytrace=False)
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    if found.get("IMAGES_BUILT") != "yes":
        pytest.fail(
            f"no images of the current sources ({found.get('SENDER_IMAGE')}, {found.get('OPERATOR_IMAGE')}): "
            "run `make images` (make test does it first)",
            pytrace=False,
        )
    env = {**os.environ, "CONTAINERS_CONF": found["CONTAINERS_CONF"]}
    return Images(sender=found["SENDER_IMAGE"], operator=found["OPERATOR_IMAGE"], env=env)


class Container:
    """One container in the foreground of a `podman run` client whose output goes to a log file."""

    def __init__(
        self,
        images: Images,
        image: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        volumes: Mapping[Path, str] | None = None,
        logdir: Path,
    ) -> None:
        self.images, self.image, self.args = images, image, list(args)
        self.env = dict(env or {})
        self.volumes = dict(volumes or {})
        self.name = f"{NAME_PREFIX}{uuid.uuid4().hex[:12]}"
        self.log_path = logdir / f"{self.name}.log"
        self._client: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def argv(self) -> list[str]:
        argv = ["podman", "--runtime", "runc", "run", "--rm", "--name", self.name, "--network=host"]
        argv += ["--user", RUN_AS, "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777"]
        argv += ["--cap-drop=ALL", "--security-opt=no-new-privileges"]
        for key, value in self.env.items():
            argv += ["--env", f"{key}={value}"]
        for source, target in self.volumes.items():
            argv += ["--volume", f"{source}:{target}:ro"]
        return [*argv, self.image, *self.args]

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._client = subprocess.Popen(
                self.argv(), env=self.images.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def running(self) -> bool:
        return self._client is not None and self._client.poll() is None

    def wait(self, timeout: float) -> int:
        """The exit status of a container that ends by itself (e.g. `outbound migrate`)."""
        assert self._client is not None
        try:
            self.returncode = self._client.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args} still running after {timeout} s:\n{self.log()[-3000:]}") from None
        return self.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def container_id(self) -> str | None:
        result = self.images.podman("container", "inspect", "--format", "{{.Id}}", self.name, check=False)
        return result.stdout.strip() or None

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM (podman proxies it to the container's PID 1), then `podman rm -f` after ``grace``."""
        client, self._client = self._client, None
        if client is None:
            return self.returncode
        container_id = self.container_id()
        if client.poll() is None:
            client.send_signal(signal.SIGTERM)
            try:
                self.returncode = client.wait(grace)
            except subprocess.TimeoutExpired:
                self.images.podman("rm", "--force", "--ignore", "--time", "5", self.name, check=False)
                client.kill()
                client.wait(30)
        else:
            self.returncode = client.returncode
        self.images.podman("rm", "--force", "--ignore", self.name, check=False)
        self._assert_gone(container_id)
        return self.returncode

    def _assert_gone(self, container_id: str | None, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            exists = self.images.podman("container", "exists", self.name, check=False).returncode == 0
            leftovers = processes_mentioning(container_id) if container_id else []
            if not exists and not leftovers:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} left behind: container={exists}, processes={leftovers}")
            time.sleep(0.2)


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (conmon and runc carry the container ID)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry.name))
    return found


def leftover_containers(images: Images) -> list[str]:
    """Containers of these tests that still exist (should be none after a test)."""
    result = images.podman("ps", "--all", "--filter", f"name=^{NAME_PREFIX}", "--format", "{{.Names}}")
    return result.stdout.split()
