"""`outbound worker`: one OutboundJobWorker process, or a supervisor and N of them in one pod.

A worker process is one asyncio loop, so it uses one CPU at most. OUTBOUND_WORKER_PROCESSES (default:
the container's CPU limit, worker/cpus.py) decides how many run:

- 1: this process is the worker, with /healthz, /readyz and /metrics on OUTBOUND_HTTP_PORT.
- N > 1: this process is the supervisor. It starts N children (`outbound worker` again, each an
  OutboundJobWorker with its own claim loop and at most 3 database connections, lease owner
  `<OUTBOUND_WORKER_ID>-<i>`; without Redis, each keeps 1/N of a WhatsApp number's rate in
  process) and serves the pod's port itself:
  - /metrics: the children count in prometheus_client's multiprocess mode, in a folder made for this
    run (PROMETHEUS_MULTIPROC_DIR, under the temp dir); the supervisor exports their sum (each gauge
    combined by its mode, metrics.py) and the database-derived gauges, which it alone refreshes;
  - /readyz: ready when the database answers and every child has started its worker (each says so
    on a socket it inherits) and none has ended;
  - SIGTERM (or SIGINT): forwarded to every child, which drains (in-flight sends finish and are
    recorded); the supervisor waits for them all and exits 0 when every one did;
  - a child that ends on its own (a crash, the OOM killer): the supervisor stops the others (they
    drain) and exits 1, and Kubernetes restarts the container. It does not restart the child in
    place: a pod with a dead worker would run on at part of its capacity while Ready, the restart
    would hide from `kubectl get pods`, and Kubernetes already backs off a crash loop;
  - the supervisor killed: each child reads the end of its socket and drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from outbound_sender import api_commands, app
from outbound_sender.config import AllSettings
from outbound_sender.metrics import DatabaseMetrics, Metrics
from outbound_sender.observability.service import observe
from outbound_sender.worker.loops import WorkerFailed

log = logging.getLogger("OutboundJobWorker")

SUPERVISOR_FD = "OUTBOUND_WORKER_SUPERVISOR_FD"  # set by the supervisor in its children's environment
READY = b"ready\n"
STOP_MARGIN_SECONDS = 15.0  # beyond OUTBOUND_WORKER_SHUTDOWN_GRACE_SECONDS before a child is killed


async def worker_failed(run: Coroutine[Any, Any, None]) -> bool:
    """Run the worker; True when it stopped on a failure (exit non-zero so the pod is restarted)."""
    try:
        await run
    except WorkerFailed as error:
        print(f"outbound: {error}", file=sys.stderr, flush=True)
        return True
    return False


def is_child() -> bool:
    """This process is one of a supervisor's worker processes."""
    return SUPERVISOR_FD in os.environ


async def one_worker(dsn: str, settings: AllSettings, stop: asyncio.Event) -> int:
    """This process is the worker, serving its port (a supervisor's child: no port, see `_child_link`)."""
    metrics = Metrics()
    worker = app.build_worker(dsn, settings, metrics)
    if is_child():
        async with _child_link(int(os.environ[SUPERVISOR_FD]), worker.started, stop):
            return 1 if await worker_failed(worker.run(stop)) else 0
    settings.api = settings.api.model_copy(update={"enabled": False})  # /healthz, /readyz, metrics
    async with api_commands.api_running(dsn, settings, stop, metrics):
        observing = asyncio.create_task(observe(dsn, metrics, settings, stop, serve=False))
        failed = await worker_failed(worker.run(stop))
        await observing
    return 1 if failed else 0


@contextlib.asynccontextmanager
async def _child_link(fd: int, started: asyncio.Event, stop: asyncio.Event) -> AsyncIterator[None]:
    """A child's socket to its supervisor: say `ready` once the worker started; stop (drain) when
    the supervisor is gone."""
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd))

    async def tell_ready() -> None:
        await started.wait()
        writer.write(READY)
        await writer.drain()

    async def watch() -> None:
        await reader.read()
        if not stop.is_set():
            log.warning("OutboundJobWorker supervisor gone: draining")
            stop.set()

    tasks = [asyncio.create_task(tell_ready()), asyncio.create_task(watch())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()


@dataclass
class Child:
    """A worker process of the pod, seen from the supervisor."""

    index: int
    process: asyncio.subprocess.Process
    link: asyncio.StreamReader
    end: asyncio.StreamWriter  # held open: the child drains when it closes
    ready: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def follow(self) -> None:
        """Note the child's `ready`; end when its socket closes."""
        while line := await self.link.readline():
            self.ready = self.ready or line == READY


class ChildrenMetrics(Collector):
    """The children's metrics (multiprocess files), less the refresh metrics the supervisor exports."""

    def __init__(self, folder: Path) -> None:
        self.files = MultiProcessCollector(None, path=str(folder))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Any]:
        families = self.files.collect()  # type: ignore[no-untyped-call]
        return (family for family in families if family.name not in DatabaseMetrics.NAMES)


async def supervise(dsn: str, settings: AllSettings, count: int, stop: asyncio.Event) -> int:
    """Run `count` worker processes until `stop` or until one ends; the exit code of the pod."""
    folder = Path(tempfile.mkdtemp(prefix="outbound-metrics-"))
    registry = CollectorRegistry()
    registry.register(ChildrenMetrics(folder))
    metrics = DatabaseMetrics(registry)
    children: list[Child] = []
    settings.api = settings.api.model_copy(update={"enabled": False})
    ready = lambda: readiness(children, count)  # noqa: E731
    try:
        async with api_commands.api_running(dsn, settings, stop, metrics, readiness=ready):
            observing = asyncio.create_task(observe(dsn, metrics, settings, stop, serve=False))
            for index in range(count):
                children.append(await _start_child(index, count, dsn, settings, folder))
            crashed = await _until_stop_or_exit(children, stop, folder)
            grace = settings.worker.shutdown_grace_seconds + STOP_MARGIN_SECONDS
            codes = await _stop_children(children, grace)
            await observing
    finally:
        for child in children:
            if child.process.returncode is None:
                child.process.kill()
        shutil.rmtree(folder, ignore_errors=True)
    log.info("OutboundJobWorker processes stopped", extra={"fields": {"exitCodes": codes}})
    return 1 if crashed or any(codes) else 0


def readiness(children: list[Child], count: int) -> str | None:
    waiting = [c.index for c in children if not c.ready or c.process.returncode is not None]
    waiting += range(len(children), count)
    return None if not waiting else f"worker processes not running: {', '.join(map(str, waiting))} of {count}"


async def _start_child(index: int, count: int, dsn: str, settings: AllSettings, folder: Path) -> Child:
    mine, theirs = socket.socketpair()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "OUTBOUND_WORKER_PROCESSES": str(count),  # the pod's: the share of in-process WhatsApp limits
        "OUTBOUND_WORKER_ID": f"{settings.worker.id}-{index}",
        SUPERVISOR_FD: str(theirs.fileno()),
    }
    command = [sys.executable, "-m", "outbound_sender.cli", "worker"]
    with theirs:
        process = await asyncio.create_subprocess_exec(*command, env=env, pass_fds=[theirs.fileno()])
    reader, writer = await asyncio.open_connection(sock=mine)
    child = Child(index, process, reader, writer)
    child.tasks.append(asyncio.create_task(child.follow()))
    log.info("OutboundJobWorker process started", extra={"fields": {"index": index, "pid": process.pid}})
    return child


async def _until_stop_or_exit(children: list[Child], stop: asyncio.Event, folder: Path) -> bool:
    """Wait for `stop` or the first child's end; True when a child ended first (then `stop` is set)."""
    exits = {asyncio.create_task(child.process.wait()): child for child in children}
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
    for task in [stopping, *exits]:
        task.cancel()
    if stop.is_set():  # stopping (a child that already ended counts by its exit code)
        return False
    ended = [child for task, child in exits.items() if task in done]
    for child in ended:
        fields = {"index": child.index, "pid": child.process.pid, "exitCode": child.process.returncode}
        log.error("OutboundJobWorker process ended: stopping the pod's other workers", extra={"fields": fields})
        mark_process_dead(child.process.pid, str(folder))  # type: ignore[no-untyped-call]  # its in-flight and heartbeat leave the pod's gauges
    stop.set()
    return True


async def _stop_children(children: list[Child], deadline_seconds: float) -> list[int]:
    """SIGTERM every child still running, wait for all (SIGKILL after the deadline); their exit codes."""
    for child in children:
        if child.process.returncode is None:
            child.process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(deadline_seconds):
            await asyncio.gather(*(child.process.wait() for child in children))
    except TimeoutError:
        log.error("OutboundJobWorker processes still running after the grace period: killed")
        for child in children:
            if child.process.returncode is None:
                child.process.kill()
        await asyncio.gather(*(child.process.wait() for child in children))
    for child in children:
        await asyncio.gather(*child.tasks, return_exceptions=True)
        child.end.close()
    # A child the SIGTERM reached before its handlers were set (still starting) had nothing to drain.
    return [0 if child.process.returncode == -signal.SIGTERM else child.process.returncode or 0 for child in children]
