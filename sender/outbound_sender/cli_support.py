"""What every `outbound` command shares: settings and their preflight, the event loop, a database
connection, the consoles, and option types (durations)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg
import typer
from rich.console import Console

from outbound_sender import app, runtime, tracing
from outbound_sender.config import AllSettings, load_settings
from outbound_sender.errors import ConfigError
from outbound_sender.logs import setup_logging
from outbound_sender.observability.sentry import setup_sentry
from outbound_sender.store.db import connect

# Entry points that call providers or accept their webhooks: OUTBOUND_PROVIDER_KIND must be explicit
# there (an image started with only DATABASE_URL must not trust the sandboxes' public secrets).
NEEDS_PROVIDER_KIND = frozenset({"api", "worker", "check-provider"})
SERVES_WEBHOOKS = frozenset({"api", "run"})
# The processes a message's trace passes through (docs/tracing.md); service.name outbound-<command>.
TRACED = frozenset({"api", "worker", "run"})


def preflight(settings: AllSettings, command: str) -> None:
    """Refuse to start without a provider mode (only `run` defaults to sandbox), or in live mode
    without a webhook secret; then the cross-group rules."""
    if settings.provider.kind is None and command == "run":
        settings.provider = settings.provider.model_copy(update={"kind": "sandbox"})
    if command in NEEDS_PROVIDER_KIND:
        app.provider_kind(settings)
    if command in SERVES_WEBHOOKS and settings.api.enabled:
        app.webhook_provider_settings(settings)
    app.check_consistency(settings)


Handler = Callable[[AllSettings], Coroutine[Any, Any, int]]


def execute(command: str, handler: Handler) -> None:
    """Load and check the settings, set up logging and Sentry, run `handler` on the event loop and
    exit with its code (2 for a configuration error)."""
    try:
        settings = load_settings()
        preflight(settings, command)
        if command in TRACED:
            tracing.setup_tracing(command, settings.tracing)
    except ConfigError as error:
        print(f"outbound: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
    setup_logging(settings.base.outbound_log_format, settings.base.outbound_log_level)
    setup_sentry(worker_type="OutboundJobWorker" if command == "worker" else command)
    try:
        code = app.run_async(lambda: handler(settings))
    finally:
        tracing.shutdown_tracing()  # export the spans still buffered
    if code:
        raise typer.Exit(code)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `outbound: message` on stderr; the caller raises the returned Exit."""
    print(f"outbound: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code)


@contextlib.asynccontextmanager
async def connection(settings: AllSettings) -> AsyncIterator[asyncpg.Connection]:
    """One connection to DATABASE_URL (or the embedded server) for the length of the block."""
    with runtime.database(settings.base, say=False) as dsn:
        conn = await connect(dsn)
        try:
            yield conn
        finally:
            await conn.close()


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # piped or captured: whole lines, no wrapping at 80 columns
        console = Console(stderr=stderr, highlight=False, width=200, soft_wrap=True)
    return console


out = _console(stderr=False)
err = _console(stderr=True)

_DURATION = re.compile(r"(\d+)\s*(s|m|h|d|w)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> dt.timedelta:
    """`90s`, `10m`, `2h`, `7d`, `1w`, or combined (`1h30m`); typer's parser for duration options."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise typer.BadParameter(f"{text!r} is not a duration such as 90s, 10m, 2h, 7d or 1h30m")
    return sum((dt.timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), dt.timedelta())


def unwrap_help(app: typer.Typer) -> None:
    """Commands' help from their docstrings as flowing text: rich help keeps source line breaks."""
    for info in app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = " ".join(info.callback.__doc__.split())
    for group in app.registered_groups:
        if group.typer_instance is not None:
            unwrap_help(group.typer_instance)
