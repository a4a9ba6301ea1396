"""Child processes of the test plane: started with a log file, stopped by their own PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path


class PlaneStartError(RuntimeError):
    """A component of the test plane did not come up; the message carries its log tail."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now.

    The sockets are held open together until all ports are known, so no port is handed out twice.
    """
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


class Daemon:
    """One long-running program whose output goes to ``<logdir>/<name>.log``."""

    def __init__(self, name: str, argv: Sequence[str], logdir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = logdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # A session of its own: a Ctrl-C aimed at pytest does not kill the plane before teardown.
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; only this process, by its PID."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)


def wait_until(check: Callable[[], bool], *, daemon: Daemon, what: str, timeout: float) -> None:
    """Poll ``check`` until it holds; fail fast with the log tail if ``daemon`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not check():
        if not daemon.running():
            raise PlaneStartError(f"{daemon.name} exited before {what}; log {daemon.log_path}:\n{daemon.log_tail()}")
        if time.monotonic() > deadline:
            raise PlaneStartError(f"{what} not reached in {timeout:.0f} s; log {daemon.log_path}:\n{daemon.log_tail()}")
        time.sleep(0.1)
