"""`outbound`: run the sender and operate it (the runbook's manual steps as commands)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import re
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from pydantic import ValidationError

from outbound_sender import app, runtime
from outbound_sender.api import commands as api_commands
from outbound_sender.api.schemas import CORRELATION_ID, MessageIn
from outbound_sender.api.validation import check_message
from outbound_sender.config import AllSettings, load_settings
from outbound_sender.domain import Channel, NewMessage
from outbound_sender.errors import ConfigError
from outbound_sender.logs import setup_logging
from outbound_sender.metrics import Metrics
from outbound_sender.observability.sentry import setup_sentry
from outbound_sender.observability.service import observe
from outbound_sender.providers import check, registry
from outbound_sender.providers.accounts import load_provider_settings
from outbound_sender.recipients import normalize_recipient
from outbound_sender.store import messages, migrations
from outbound_sender.store.db import connect
from outbound_sender.store.queries import sql
from outbound_sender.worker.runner import WorkerFailed

DEMO_RECIPIENT = "+14155552671"
EPILOG = (
    "api, worker and check-provider need OUTBOUND_PROVIDER_KIND (live, sandbox, generic or null) and "
    "refuse to start without it; only run defaults to sandbox. In live mode, api and run also need the "
    "webhook secret of every provider in use."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outbound", description=__doc__, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply database migrations (DATABASE_URL or the embedded server)")
    sub.add_parser(
        "run",
        help="API + worker + provider sandboxes, and one demo message per channel the worker sends "
        "(sandbox kinds only, never live); embedded PostgreSQL/Redis by default",
    )
    sub.add_parser("worker", help="run the OutboundJobWorker until SIGTERM (needs OUTBOUND_PROVIDER_KIND)")
    sandbox = sub.add_parser("sandbox", help="run the sandbox provider server(s)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8090)
    sandbox.add_argument("--providers", action="store_true", help="also serve every provider's sandbox")
    _check_args(
        sub.add_parser(
            "check-provider", help="check a provider's credentials; optionally send one (needs OUTBOUND_PROVIDER_KIND)"
        )
    )
    sub.add_parser("status", help="message counts by status")
    quota = sub.add_parser("quota", help="WhatsApp quota per organisation (used, remaining, reset, throttle)")
    quota.add_argument("--org", help="one organisation")
    show = sub.add_parser("show", help="a message with its attempts")
    show.add_argument("id", type=int)
    _enqueue_args(sub.add_parser("enqueue", help="insert one message (QUEUED) and NOTIFY the workers"))
    api_commands.add_parsers(sub)
    return parser


def _enqueue_args(p: argparse.ArgumentParser) -> None:
    p.description = "Checked by the same rules as POST /v1/messages (docs/api.md); a refusal names each field."
    p.add_argument("--org", default="demo", help="organisation id (default: demo)")
    p.add_argument("--channel", required=True, type=str.upper, choices=[c.value for c in Channel])
    p.add_argument("--to", required=True, help="valid E.164 phone number (+14155552671) or e-mail address")
    p.add_argument("--body")
    p.add_argument("--subject")
    p.add_argument("--template", help="template code: WhatsApp template name, SendGrid template id")
    p.add_argument("--language", help="WhatsApp template language (en_US, fr, pt_BR); required with a template")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE|NAME+=VALUE",
        help="template parameter, repeatable: NAME=VALUE is a named parameter; NAME+=VALUE appends to the "
        "positional list NAME (WhatsApp: header+=…, body+=… fill {{1}}, {{2}}, … in order)",
    )
    p.add_argument("--dossier")
    p.add_argument("--correlation-id")
    p.add_argument("--priority", type=int, default=0, help="-100..100, higher first")
    p.add_argument("--max-attempts", type=int, default=5, help="1..20")
    p.add_argument("--wait", action="store_true", help="wait until SENT or FAILED and show the message")


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("provider", choices=registry.checkable())
    p.add_argument("--base-url", help="API base URL (default: the provider's *_BASE_URL setting)")
    p.add_argument(
        "--send-to", metavar="RECIPIENT", help="also send one real test message to RECIPIENT (checked as the API does)"
    )
    p.add_argument("--body", default="Test message from outbound check-provider")
    p.add_argument("--subject", default="Test message", help="e-mail subject (sendgrid)")
    p.add_argument("--template", help="template name (whatsapp) / template_id (sendgrid)")
    p.add_argument("--language", help="template language (whatsapp)")
    p.add_argument("--timeout", type=float, default=15.0, help="read timeout in seconds")


# Entry points that call providers or accept their webhooks: OUTBOUND_PROVIDER_KIND must be explicit
# there (an image started with only DATABASE_URL must not trust the sandboxes' public secrets).
NEEDS_PROVIDER_KIND = frozenset({"api", "worker", "check-provider"})
SERVES_WEBHOOKS = frozenset({"api", "run"})


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        preflight(settings, args.command)
    except ConfigError as error:
        print(f"outbound: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.base.outbound_log_format, settings.base.outbound_log_level)
    setup_sentry(worker_type="OutboundJobWorker" if args.command == "worker" else args.command)
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


# API field -> the option that sets it, to name options in refusals.
OPTIONS = {
    "to": "--to",
    "body": "--body",
    "subject": "--subject",
    "template_code": "--template",
    "template_language": "--language",
    "template_params": "--param",
    "dossier_id": "--dossier",
    "correlation_id": "--correlation-id",
    "priority": "--priority",
    "max_attempts": "--max-attempts",
}


class Refused(Exception):
    """The message breaks the API's rules: one line per problem, naming the option."""


def _template_params(pairs: list[str]) -> dict[str, str | list[str]]:
    params: dict[str, str | list[str]] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            raise Refused(f"--param {pair!r}: expected NAME=VALUE or NAME+=VALUE")
        if name.endswith("+"):
            listed = params.setdefault(name.removesuffix("+"), [])
            if not isinstance(listed, list):
                raise Refused(f"--param {name.removesuffix('+')}: both named (=) and positional (+=)")
            listed.append(value)
        elif name in params:
            raise Refused(f"--param {name}: given more than once (NAME+=VALUE builds a list)")
        else:
            params[name] = value
    return params


def _field(location: tuple[str | int, ...]) -> str:
    first, *rest = location
    option = OPTIONS.get(str(first), f"--{first}")
    return " ".join([option, *(str(part) for part in rest)])


def _new_message(args: argparse.Namespace) -> NewMessage:
    """The message as POST /v1/messages would take it: the same model and channel rules, the same
    normalized recipient; Refused lists every problem."""
    fields = {
        "channel": args.channel,
        "to": args.to,
        "body": args.body,
        "subject": args.subject,
        "template_code": args.template,
        "template_language": args.language,
        "template_params": _template_params(args.param),
        "dossier_id": args.dossier,
        "priority": args.priority,
        "max_attempts": args.max_attempts,
    }
    problems: list[str] = []
    if args.correlation_id is not None and not re.match(CORRELATION_ID, args.correlation_id):
        problems.append(f"--correlation-id: must match {CORRELATION_ID}")
    try:
        model = MessageIn.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        problems += [f"{_field(e['loc'])}: {e['msg']}" for e in error.errors()]
        raise Refused("\n".join(problems)) from None
    to, rules = check_message(model, dt.datetime.now(dt.UTC))
    problems += [f"{_field(tuple(p.field.split('.')))}: {p.reason}" for p in rules]
    if problems or to is None:
        raise Refused("\n".join(problems))
    return model.new_message(args.org, to, args.correlation_id, None)


async def _enqueue(settings: AllSettings, args: argparse.Namespace) -> int:
    try:
        message = _new_message(args)
    except Refused as refused:
        print(f"outbound: message refused:\n  {str(refused).replace(chr(10), chr(10) + '  ')}", file=sys.stderr)
        return 2
    with runtime.database(settings.base, say=False) as dsn:
        conn = await connect(dsn)
        try:
            message_id = await messages.enqueue(conn, message)
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


async def _quota(settings: AllSettings, args: argparse.Namespace) -> int:
    with runtime.database(settings.base, say=False) as dsn:
        conn = await connect(dsn)
        try:
            await _print_quota(conn, args.org)
        finally:
            await conn.close()
    return 0


async def _print_quota(conn: asyncpg.Connection, org: str | None) -> None:
    rows = await conn.fetch(sql("quota_status"), org)
    if not rows:
        print("no WhatsApp quota in use yet" + (f" for {org}" if org else ""))
    for row in rows:
        throttle = f"  throttled until {row['throttle_until']}" if row["throttle_until"] else ""
        print(
            f"{row['org_id']:<16} used {row['used']}/{row['quota_limit']} ({row['used_percent']}%)"
            f"  remaining {row['remaining']}  resets {row['reset_at']:%Y-%m-%d %H:%M:%S%z}{throttle}"
        )


WORKER_DISABLED = "OutboundJobWorker disabled by OUTBOUND_WORKER_ENABLED=false; not claiming"


async def _worker(settings: AllSettings, _args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    with runtime.database(settings.base) as dsn:
        if not settings.worker.enabled:
            print(WORKER_DISABLED, flush=True)
            await stop.wait()
            return 0
        metrics = Metrics()
        worker = app.build_worker(dsn, settings, metrics)
        settings.api = settings.api.model_copy(update={"enabled": False})  # /healthz, /readyz, metrics
        async with api_commands.api_running(dsn, settings, stop, metrics):
            observing = asyncio.create_task(observe(dsn, metrics, settings, stop, serve=False))
            failed = await _worker_failed(worker.run(stop))
            await observing
    return 1 if failed else 0


async def _worker_failed(run: Coroutine[Any, Any, None]) -> bool:
    """Run the worker; True when it stopped on a failure (exit non-zero so the pod is restarted)."""
    try:
        await run
    except WorkerFailed as error:
        print(f"outbound: {error}", file=sys.stderr, flush=True)
        return True
    return False


async def _sandbox(settings: AllSettings, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    print(f"sandbox provider on http://{args.host}:{args.port}", flush=True)
    if not args.providers:
        await app.serve_until(app.sandbox_server(args.host, args.port), stop)
        return 0
    async with _provider_sandboxes(settings, stop):
        await app.serve_until(app.sandbox_server(args.host, args.port), stop)
    return 0


async def _check_provider(settings: AllSettings, args: argparse.Namespace) -> int:
    config = load_provider_settings()
    if settings.provider.kind == "sandbox":
        config = app.with_sandbox_defaults(config)
    if args.base_url:
        section = config.accounts[args.provider]
        config.accounts[args.provider] = section.model_copy(update={"base_url": args.base_url})
    message = None
    if args.send_to:
        try:
            to = normalize_recipient(registry.entry(args.provider).channel, args.send_to)
        except ValueError as error:
            print(f"outbound: --send-to: {error}", file=sys.stderr)
            return 2
        message = check.TestMessage(to, args.body, args.subject, args.template, args.language)
    try:
        return await check.run_check(args.provider, config, app.check_provider_factory, message, timeout=args.timeout)
    except ValueError as error:  # missing credentials
        print(f"outbound: {error}", file=sys.stderr)
        return 2


async def _run(settings: AllSettings, _args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    with runtime.database(settings.base) as dsn, runtime.redis(settings.base) as redis_url:
        settings.base.redis_url = redis_url
        await _apply_migrations(dsn)
        metrics = Metrics()
        async with _sandbox_running(settings, stop), api_commands.api_running(dsn, settings, stop, metrics):
            observing = asyncio.create_task(observe(dsn, metrics, settings, stop, serve=False))
            worker_task: asyncio.Task[bool] | None = None
            channels: list[Channel] = []
            if settings.worker.enabled:
                worker = app.build_worker(dsn, settings, metrics)
                worker_task = asyncio.create_task(_worker_failed(worker.run(stop)))
                channels = _sending(settings, worker.dispatcher.channels)
            else:
                print(WORKER_DISABLED, flush=True)
            if settings.provider.kind in LOCAL_KINDS:
                await _demo(dsn, channels)
                _print_howto()
            else:
                print(f"OUTBOUND_PROVIDER_KIND={settings.provider.kind}: no demo messages", flush=True)
            await api_commands.print_api_howto(dsn, settings)
            failed = await worker_task if worker_task is not None else False
            await observing
    return 1 if failed else 0


# Provider kinds whose sends never leave the machine: only these get `outbound run`'s demo messages.
LOCAL_KINDS = ("sandbox", "generic", "null")


def _sending(settings: AllSettings, served: frozenset[Channel]) -> list[Channel]:
    """The channels the worker sends: a provider serves it, its switch is on, the worker claims it."""
    switched_on = settings.switches.enabled()
    return [c for c in Channel if c in served and c in switched_on and c in settings.worker.channels]


@contextlib.asynccontextmanager
async def _sandbox_running(settings: AllSettings, stop: asyncio.Event) -> AsyncIterator[None]:
    """The sandboxes the configured provider kind calls: the three provider sandboxes (default),
    or the generic one (OUTBOUND_PROVIDER_KIND=generic); none for live or null."""
    if settings.provider.kind == "sandbox":
        async with _provider_sandboxes(settings, stop):
            yield
    elif settings.provider.kind == "generic":
        async with _generic_sandbox(settings, stop):
            yield
    else:
        yield


@contextlib.asynccontextmanager
async def _generic_sandbox(settings: AllSettings, stop: asyncio.Event) -> AsyncIterator[None]:
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


@contextlib.asynccontextmanager
async def _provider_sandboxes(settings: AllSettings, stop: asyncio.Event) -> AsyncIterator[None]:
    """Every provider's sandbox, for as long as the block runs."""
    servers = app.provider_sandbox_servers(settings, load_provider_settings())
    tasks = [asyncio.create_task(app.serve_until(server, stop)) for server in servers.values()]
    try:
        for name, server in servers.items():
            await app.wait_started(server)
            print(f"{name} sandbox on http://{server.config.host}:{server.config.port}", flush=True)
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


DEMOS = (
    NewMessage(org_id="demo", channel=Channel.SMS, to_recipient=DEMO_RECIPIENT, body="Hello from make run"),
    NewMessage(
        org_id="demo",
        channel=Channel.EMAIL,
        to_recipient="demo@example.com",
        subject="Hello",
        body="Hello from make run",
    ),
    NewMessage(org_id="demo", channel=Channel.WHATSAPP, to_recipient=DEMO_RECIPIENT, body="Hello from make run"),
)


async def _demo(dsn: str, channels: list[Channel]) -> None:
    """Send one message per channel the worker sends through the whole pipeline, so the user sees it
    work (sandbox kinds only: the caller never sends them to real providers)."""
    skipped = [c.value for c in Channel if c not in channels]
    if skipped:
        print(f"no demo message for {', '.join(skipped)}: the worker does not send it", flush=True)
    if not channels:
        return
    conn = await connect(dsn)
    try:
        ids = [await messages.enqueue(conn, demo) for demo in DEMOS if demo.channel in channels]
        for message_id in ids:
            await messages.wait_final(conn, message_id, timeout=60)
        print("demo messages went through the pipeline:", flush=True)
        for message_id in ids:
            await _print_message(conn, message_id)
        if Channel.WHATSAPP in channels:
            print("WhatsApp quota (outbound quota):", flush=True)
            await _print_quota(conn, "demo")
    finally:
        await conn.close()


def _print_howto() -> None:
    print(
        "\nReady. In another terminal:\n"
        "  .venv/bin/outbound enqueue --channel SMS --to +14155552671 --body 'hi' --wait\n"
        "  .venv/bin/outbound enqueue --channel SMS --to +14155550001 --body 'bad number' --wait"
        "   # permanent failure (Twilio 21211)\n"
        "  .venv/bin/outbound enqueue --channel EMAIL --to a@example.com --subject hi --body 'hi' --wait\n"
        "  .venv/bin/outbound enqueue --channel WHATSAPP --to +14155552671 --template appointment_reminder"
        " --language en_US --param body+=Tuesday --param body+=10:30 --wait\n"
        "  OUTBOUND_PROVIDER_KIND=sandbox .venv/bin/outbound check-provider twilio --send-to +14155552671\n"
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
    "quota": _quota,
    "show": _show,
    "enqueue": _enqueue,
    "check-provider": _check_provider,
    "api": api_commands.serve_api,
    "apikey": api_commands.apikey,
}

if __name__ == "__main__":
    sys.exit(main())
