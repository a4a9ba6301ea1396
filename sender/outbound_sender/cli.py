"""`outbound`: run the sender and operate it (the runbook's manual steps as commands)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

import asyncpg

from outbound_sender import app, runtime
from outbound_sender.api import commands as api_commands
from outbound_sender.config import AllSettings, load_settings
from outbound_sender.domain import Channel, NewMessage
from outbound_sender.errors import ConfigError
from outbound_sender.logs import setup_logging
from outbound_sender.metrics import Metrics
from outbound_sender.store import messages, migrations
from outbound_sender.store.db import connect

DEMO_RECIPIENT = "+15551230000"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outbound", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply database migrations (DATABASE_URL or the embedded server)")
    sub.add_parser("run", help="API + worker + sandbox provider; embedded PostgreSQL/Redis by default")
    sub.add_parser("worker", help="run the OutboundJobWorker until SIGTERM")
    sandbox = sub.add_parser("sandbox", help="run the sandbox provider server")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8090)
    sub.add_parser("status", help="message counts by status")
    show = sub.add_parser("show", help="a message with its attempts")
    show.add_argument("id", type=int)
    _enqueue_args(sub.add_parser("enqueue", help="insert one message (QUEUED) and NOTIFY the workers"))
    api_commands.add_parsers(sub)
    return parser


def _enqueue_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--org", default="demo", help="organisation id (default: demo)")
    p.add_argument("--channel", required=True, type=str.upper, choices=[c.value for c in Channel])
    p.add_argument("--to", required=True, help="E.164 phone number or e-mail address")
    p.add_argument("--body")
    p.add_argument("--subject")
    p.add_argument("--template", help="template code (WhatsApp templates)")
    p.add_argument("--dossier")
    p.add_argument("--correlation-id")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument("--wait", action="store_true", help="wait until SENT or FAILED and show the message")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        app.check_consistency(settings)
    except ConfigError as error:
        print(f"outbound: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.base.outbound_log_format, settings.base.outbound_log_level)
    handler = COMMANDS[args.command]
    return app.run_async(lambda: handler(settings, args))


async def _migrate(settings: AllSettings, _args: argparse.Namespace) -> int:
    with runtime.database(settings.base) as dsn:
        await _apply_migrations(dsn)
    return 0


async def _apply_migrations(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        done = await migrations.migrate(conn)
    finally:
        await conn.close()
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in done) or "none (schema is current)"
    print(f"migrations applied: {names}", flush=True)


def _new_message(args: argparse.Namespace) -> NewMessage:
    return NewMessage(
        org_id=args.org,
        channel=Channel(args.channel),
        to_recipient=args.to,
        body=args.body,
        subject=args.subject,
        template_code=args.template,
        dossier_id=args.dossier,
        correlation_id=args.correlation_id,
        priority=args.priority,
        max_attempts=args.max_attempts,
    )


async def _enqueue(settings: AllSettings, args: argparse.Namespace) -> int:
    with runtime.database(settings.base, say=False) as dsn:
        conn = await connect(dsn)
        try:
            message_id = await messages.enqueue(conn, _new_message(args))
            print(f"enqueued messageId={message_id}", flush=True)
            if args.wait:
                await messages.wait_final(conn, message_id, timeout=120)
                await _print_message(conn, message_id)
        finally:
            await conn.close()
    return 0


async def _print_message(conn: asyncpg.Connection, message_id: int) -> None:
    row = await messages.get_message(conn, message_id)
    if row is None:
        print(f"no message {message_id}")
        return
    keys = [
        "id",
        "org_id",
        "channel",
        "status",
        "attempt_count",
        "max_attempts",
        "provider",
        "provider_message_id",
    ]
    keys += ["error_code", "error_message", "created_at", "sent_at"]
    print("  ".join(f"{k}={row[k]}" for k in keys))
    for attempt in await messages.get_attempts(conn, message_id):
        parts = ["attempt_no", "outcome", "provider", "error_code", "duration_ms", "next_retry_at"]
        print("    attempt " + "  ".join(f"{k}={attempt[k]}" for k in parts))


async def _show(settings: AllSettings, args: argparse.Namespace) -> int:
    with runtime.database(settings.base, say=False) as dsn:
        conn = await connect(dsn)
        try:
            await _print_message(conn, args.id)
        finally:
            await conn.close()
    return 0


async def _status(settings: AllSettings, _args: argparse.Namespace) -> int:
    with runtime.database(settings.base, say=False) as dsn:
        conn = await connect(dsn)
        try:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM outbound_message GROUP BY 1 ORDER BY 1")
        finally:
            await conn.close()
    for row in rows:
        print(f"{row['status']:<10} {row['n']}")
    return 0


async def _worker(settings: AllSettings, _args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    with runtime.database(settings.base) as dsn:
        if not settings.worker.enabled:
            print("OutboundJobWorker disabled by OUTBOUND_WORKER_ENABLED=false; not claiming", flush=True)
            await stop.wait()
            return 0
        await app.build_worker(dsn, settings).run(stop)
    return 0


async def _sandbox(_settings: AllSettings, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    print(f"sandbox provider on http://{args.host}:{args.port}", flush=True)
    await app.serve_until(app.sandbox_server(args.host, args.port), stop)
    return 0


async def _run(settings: AllSettings, _args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    with runtime.database(settings.base) as dsn:
        await _apply_migrations(dsn)
        metrics = Metrics()
        async with _sandbox_running(settings, stop), api_commands.api_running(dsn, settings, stop, metrics):
            worker = asyncio.create_task(app.build_worker(dsn, settings, metrics).run(stop))
            await _demo(dsn)
            _print_howto()
            await api_commands.print_api_howto(dsn, settings)
            await worker
    return 0


@contextlib.asynccontextmanager
async def _sandbox_running(settings: AllSettings, stop: asyncio.Event):  # type: ignore[no-untyped-def]
    from urllib.parse import urlsplit

    url = urlsplit(settings.provider.sandbox_url)
    server = app.sandbox_server(url.hostname or "127.0.0.1", url.port or 8090)
    task = asyncio.create_task(app.serve_until(server, stop))
    await app.wait_started(server)
    print(f"sandbox provider on {settings.provider.sandbox_url}", flush=True)
    try:
        yield
    finally:
        stop.set()
        await task


async def _demo(dsn: str) -> None:
    """Send one message through the whole pipeline, so the user sees it work."""
    conn = await connect(dsn)
    try:
        demo = NewMessage(org_id="demo", channel=Channel.SMS, to_recipient=DEMO_RECIPIENT, body="Hello from make run")
        message_id = await messages.enqueue(conn, demo)
        await messages.wait_final(conn, message_id, timeout=60)
        print("demo message went through the pipeline:", flush=True)
        await _print_message(conn, message_id)
    finally:
        await conn.close()


def _print_howto() -> None:
    print(
        "\nReady. In another terminal:\n"
        "  .venv/bin/outbound enqueue --channel SMS --to +15551234567 --body 'hi' --wait\n"
        "  .venv/bin/outbound enqueue --channel SMS --to +15550000001 --body 'bad number' --wait"
        "   # permanent failure\n"
        "  .venv/bin/outbound status\n"
        "Ctrl-C stops everything (in-flight sends finish first).",
        flush=True,
    )


COMMANDS = {
    "migrate": _migrate,
    "run": _run,
    "worker": _worker,
    "sandbox": _sandbox,
    "status": _status,
    "show": _show,
    "enqueue": _enqueue,
    "api": api_commands.serve_api,
    "apikey": api_commands.apikey,
}

if __name__ == "__main__":
    sys.exit(main())
