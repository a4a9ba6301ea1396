"""Assembling processes: the worker with its providers, the sandbox server, signal handling."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import uvicorn

from outbound_sender.config import AllSettings
from outbound_sender.errors import ConfigError
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import Provider
from outbound_sender.providers.null import NullProvider
from outbound_sender.providers.sandbox import SandboxApp, SandboxProvider
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.retry import RetryPolicy
from outbound_sender.worker.runner import OutboundJobWorker


def http_client(settings: AllSettings) -> httpx.AsyncClient:
    """Pooled keep-alive client sized to the worker's concurrency, with explicit timeouts."""
    p = settings.provider
    timeout = httpx.Timeout(p.read_timeout_seconds, connect=p.connect_timeout_seconds)
    size = settings.worker.max_in_flight
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    return httpx.AsyncClient(timeout=timeout, limits=limits)


def build_providers(settings: AllSettings) -> list[Provider]:
    if settings.provider.kind == "null":
        return [NullProvider()]
    return [SandboxProvider(http_client(settings), settings.provider.sandbox_url)]


def check_consistency(settings: AllSettings) -> None:
    """Cross-group rules that a single field cannot express."""
    p = settings.provider
    if settings.worker.lease_seconds <= p.connect_timeout_seconds + p.read_timeout_seconds:
        raise ConfigError(
            "OUTBOUND_WORKER_LEASE_SECONDS must exceed the provider connect + read timeouts "
            f"({p.connect_timeout_seconds + p.read_timeout_seconds:g} s), or live sends lose their lease"
        )


def build_worker(dsn: str, settings: AllSettings, metrics: Metrics | None = None) -> OutboundJobWorker:
    check_consistency(settings)
    retry = RetryPolicy(
        base_seconds=settings.retry.base_ms / 1000,
        max_seconds=settings.retry.max_ms / 1000,
        max_hint_seconds=settings.retry.max_hint_seconds,
    )
    metrics = metrics or Metrics()
    providers = build_providers(settings)
    for provider in providers:
        metrics.init_provider(provider.name, provider.channels)
    return OutboundJobWorker(
        dsn,
        Dispatcher(providers),
        settings=settings.worker,
        switches=settings.switches,
        retry=retry,
        metrics=metrics,
    )


def sandbox_server(host: str, port: int, app: SandboxApp | None = None) -> uvicorn.Server:
    config = uvicorn.Config(
        app or SandboxApp(),
        host=host,
        port=port,
        log_config=None,  # our logging setup (logs.py) formats and masks uvicorn's lines too
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return uvicorn.Server(config)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop (the production event loop)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def serve_until(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Serve until `stop`, then shut down gracefully."""
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task


async def wait_started(server: uvicorn.Server, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not server.started:
            await asyncio.sleep(0.02)


Starter = Callable[[], Awaitable[None]]
