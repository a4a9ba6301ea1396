"""`outbound`: run the sender and operate it (the runbook's manual steps as commands)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import re
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlsplit

import asyncpg
import typer
from pydantic import ValidationError

from outbound_sender import api_commands, app, ops_cli, runtime, worker_pod
from outbound_sender.api.schemas import CORRELATION_ID, MessageIn
from outbound_sender.api.validation import check_message
from outbound_sender.callbacks.dispatcher import CallbackDispatcher
from outbound_sender.cli_support import (
    NEEDS_PROVIDER_KIND,
    SERVES_WEBHOOKS,
    connection,
    err,
    execute,
    preflight,
    unwrap_help,
)
from outbound_sender.config import AllSettings
from outbound_sender.domain import Channel, NewMessage
from outbound_sender.metrics import Metrics
from outbound_sender.observability.service import observe
from outbound_sender.providers import check, registry
from outbound_sender.providers.accounts import load_provider_settings
from outbound_sender.recipients import normalize_recipient
from outbound_sender.store import messages, migrations, ops
from outbound_sender.store.db import connect

__all__ = ["NEEDS_PROVIDER_KIND", "SERVES_WEBHOOKS", "main", "preflight"]

DEMO_RECIPIENT = "+14155552671"
EPILOG = (
    "api, worker and check-provider need OUTBOUND_PROVIDER_KIND (live, sandbox, generic or null) and "
    "refuse to start without it; only run defaults to sandbox. In live mode, api and run also need the "
    "webhook secret of every provider in use. Commands that change data take --dry-run and need --reason; "
    "outbound audit lists what was changed."
)

cli = typer.Typer(
    name="outbound",
    help=__doc__,
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"outbound {importlib.metadata.version('outbound-messaging')}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """`outbound`: run the sender and operate it (the runbook's manual steps as commands)."""


@cli.command("migrate")
def migrate_command() -> None:
    """apply database migrations (DATABASE_URL or the embedded server)"""
    execute("migrate", _migrate)


@cli.command("run")
def run_command() -> None:
    """API + worker + provider sandboxes, and one demo message per channel the worker sends
    (sandbox kinds only, never live); embedded PostgreSQL/Redis by default"""
    execute("run", _run)


@cli.command("worker")
def worker_command() -> None:
    """run the OutboundJobWorker until SIGTERM (needs OUTBOUND_PROVIDER_KIND). OUTBOUND_WORKER_PROCESSES
    worker processes, default the container's CPU limit rounded up (cgroup cpu.max), else the CPUs
    available; with more than one, this process supervises them and serves the pod's health, readiness
    and metrics on OUTBOUND_HTTP_PORT for all of them"""
    execute("worker", _worker)


@cli.command("callbacks")
def callbacks_command() -> None:
    """run the delivery-callback dispatcher until SIGTERM: the outbox's signed POSTs to the clients'
    URLs (health and metrics on OUTBOUND_HTTP_PORT; docs/callbacks.md)"""
    execute("callbacks", _callbacks)


@cli.command("sandbox")
def sandbox_command(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8090,
    providers: Annotated[bool, typer.Option("--providers", help="also serve every provider's sandbox")] = False,
) -> None:
    """run the sandbox provider server(s)"""
    execute("sandbox", lambda settings: _sandbox(settings, host, port, providers))


PROVIDERS = list(registry.checkable())
PROVIDER_METAVAR = "{" + "|".join(PROVIDERS) + "}"


def _provider_name(value: str) -> str:
    if value not in PROVIDERS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(PROVIDERS)}")
    return value


@dataclass(frozen=True)
class CheckArgs:
    provider: str
    base_url: str | None
    send_to: str | None
    body: str
    subject: str
    template: str | None
    language: str | None
    timeout: float


@cli.command("check-provider")
def check_provider_command(
    *,
    provider: Annotated[
        str, typer.Argument(callback=_provider_name, autocompletion=lambda: PROVIDERS, metavar=PROVIDER_METAVAR)
    ],
    base_url: Annotated[
        str | None, typer.Option(help="API base URL (default: the provider's *_BASE_URL setting)")
    ] = None,
    send_to: Annotated[
        str | None,
        typer.Option(
            metavar="RECIPIENT", help="also send one real test message to RECIPIENT (checked as the API does)"
        ),
    ] = None,
    body: Annotated[str, typer.Option()] = "Test message from outbound check-provider",
    subject: Annotated[str, typer.Option(help="e-mail subject (EMAIL providers)")] = "Test message",
    template: Annotated[str | None, typer.Option(help="template name (WHATSAPP) / template id (EMAIL)")] = None,
    language: Annotated[str | None, typer.Option(help="template language (whatsapp)")] = None,
    timeout: Annotated[float, typer.Option(help="read timeout in seconds")] = 15.0,
) -> None:
    """check a provider's credentials; optionally send one (needs OUTBOUND_PROVIDER_KIND)"""
    args = CheckArgs(provider, base_url, send_to, body, subject, template, language, timeout)
    execute("check-provider", lambda settings: _check_provider(settings, args))


@cli.command("status")
def status_command() -> None:
    """message counts by status"""
    execute("status", _status)


@cli.command("show")
def show_command(message_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """a message with its attempts"""
    execute("show", lambda settings: _show(settings, message_id))


@dataclass(frozen=True)
class EnqueueArgs:
    """`outbound enqueue`'s options, as given."""

    channel: str
    to: str
    org: str = "demo"
    body: str | None = None
    subject: str | None = None
    template: str | None = None
    language: str | None = None
    param: list[str] = field(default_factory=list)
    dossier: str | None = None
    correlation_id: str | None = None
    priority: int = 0
    max_attempts: int = 5
    wait: bool = False


@cli.command("enqueue")
def enqueue_command(
    *,
    channel: Annotated[Channel, typer.Option(case_sensitive=False)],
    to: Annotated[str, typer.Option(help="valid E.164 phone number (+14155552671) or e-mail address")],
    org: Annotated[str, typer.Option(help="organisation id")] = "demo",
    body: Annotated[str | None, typer.Option()] = None,
    subject: Annotated[str | None, typer.Option()] = None,
    template: Annotated[
        str | None, typer.Option(help="template code: WhatsApp template name, e-mail template id")
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="WhatsApp template language (en_US, fr, pt_BR); required with a template")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=VALUE|NAME+=VALUE",
            help="template parameter, repeatable: NAME=VALUE is a named parameter; NAME+=VALUE appends to the "
            "positional list NAME (WhatsApp: header+=…, body+=… fill {{1}}, {{2}}, … in order)",
        ),
    ] = None,
    dossier: Annotated[str | None, typer.Option()] = None,
    correlation_id: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[int, typer.Option(help="-100..100, higher first")] = 0,
    max_attempts: Annotated[int, typer.Option(help="1..20")] = 5,
    wait: Annotated[bool, typer.Option("--wait", help="wait until SENT or FAILED and show the message")] = False,
) -> None:
    """insert one message (QUEUED) and NOTIFY the workers. Checked by the same rules as
    POST /v1/messages (docs/api.md); a refusal names each field."""
    args = EnqueueArgs(
        channel.value,
        to,
        org,
        body,
        subject,
        template,
        language,
        list(param or []),
        dossier,
        correlation_id,
        priority,
        max_attempts,
        wait,
    )
    execute("enqueue", lambda settings: _enqueue(settings, args))


@cli.command("api")
def api_command() -> None:
    """serve the HTTP API and the delivery webhooks (OUTBOUND_HTTP_HOST:OUTBOUND_HTTP_PORT, default :8080;
    metrics on OUTBOUND_METRICS_PORT, default :9090; needs OUTBOUND_PROVIDER_KIND)"""
    execute("api", api_commands.serve_api)


apikey_cli = typer.Typer(help="API keys: create, revoke, list", no_args_is_help=True)
cli.add_typer(apikey_cli, name="apikey")


@apikey_cli.command("create")
def apikey_create_command(
    org: Annotated[str, typer.Option(help="organisation id")],
    name: Annotated[str, typer.Option(help="a label, e.g. the client's name")] = "",
) -> None:
    """issue a key for an organisation (the key is shown once)"""
    execute("apikey", lambda settings: api_commands.apikey_create(settings, org, name))


@apikey_cli.command("revoke")
def apikey_revoke_command(key_id: str) -> None:
    """revoke a key by its id"""
    execute("apikey", lambda settings: api_commands.apikey_revoke(settings, key_id))


@apikey_cli.command("list")
def apikey_list_command(org: Annotated[str | None, typer.Option()] = None) -> None:
    """keys and their state (never the secrets)"""
    execute("apikey", lambda settings: api_commands.apikey_list(settings, org))


ops_cli.register(cli)
unwrap_help(cli)


def main(argv: Sequence[str] | None = None) -> int:
    """The `outbound` console script: the command's exit code (2 for bad usage or settings)."""
    try:
        cli(args=list(argv) if argv is not None else None, prog_name="outbound")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


async def _migrate(settings: AllSettings) -> int:
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


def _new_message(args: EnqueueArgs) -> NewMessage:
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


async def _enqueue(settings: AllSettings, args: EnqueueArgs) -> int:
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
                await _wait_showing_progress(conn, message_id, timeout=120)
                await _print_message(conn, message_id)
        finally:
            await conn.close()
    return 0


async def _wait_showing_progress(conn: asyncpg.Connection, message_id: int, timeout: float) -> None:
    """Wait for the message's final status; on a terminal, a live line shows where it is."""
    started = time.monotonic()
    status = err.status(f"message {message_id}: waiting") if err.is_terminal else None
    with status if status is not None else contextlib.nullcontext():

        def show(row: asyncpg.Record) -> None:
            if status is not None:
                error = f", {row['error_code']}" if row["error_code"] else ""
                status.update(
                    f"message {message_id}: {row['status']}, attempt {row['attempt_count']}/{row['max_attempts']}"
                    f"{error} ({time.monotonic() - started:.0f}s)"
                )

        await messages.wait_final(conn, message_id, timeout=timeout, on_poll=show)


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


async def _show(settings: AllSettings, message_id: int) -> int:
    async with connection(settings) as conn:
        await _print_message(conn, message_id)
    return 0


async def _status(settings: AllSettings) -> int:
    async with connection(settings) as conn:
        rows = await ops.status_counts(conn)
    for row in rows:
        print(f"{row['status']:<10} {row['count']}")
    return 0


WORKER_DISABLED = "OutboundJobWorker disabled by OUTBOUND_WORKER_ENABLED=false; not claiming"


async def _worker(settings: AllSettings) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    with runtime.database(settings.base) as dsn:
        if not settings.worker.enabled:
            print(WORKER_DISABLED, flush=True)
            await stop.wait()
            return 0
        count = settings.worker.process_count()
        if count == 1 or worker_pod.is_child():
            return await worker_pod.one_worker(dsn, settings, stop)
        print(f"OutboundJobWorker: {count} processes (OUTBOUND_WORKER_PROCESSES)", flush=True)
        return await worker_pod.supervise(dsn, settings, count, stop)


async def _callbacks(settings: AllSettings) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    with runtime.database(settings.base) as dsn:
        metrics = Metrics()
        settings.api = settings.api.model_copy(update={"enabled": False})  # /healthz, /readyz, metrics
        async with api_commands.api_running(dsn, settings, stop, metrics):
            print("callback dispatcher running", flush=True)
            failed = await _dispatcher_failed(CallbackDispatcher(dsn, settings.callbacks, metrics).run(stop), stop)
    return 1 if failed else 0


async def _dispatcher_failed(run: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run the callback dispatcher; on a failure that is not an outage, stop the whole process and
    return True (exit non-zero so the pod is restarted)."""
    try:
        await run
    except Exception as error:
        stop.set()
        print(
            f"outbound: callback dispatcher failed: {error!r} (cause: {error.__cause__!r})", file=sys.stderr, flush=True
        )
        return True
    return False


async def _sandbox(settings: AllSettings, host: str, port: int, providers: bool) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    print(f"sandbox provider on http://{host}:{port}", flush=True)
    if not providers:
        await app.serve_until(app.sandbox_server(host, port), stop)
        return 0
    async with _provider_sandboxes(settings, stop):
        await app.serve_until(app.sandbox_server(host, port), stop)
    return 0


async def _check_provider(settings: AllSettings, args: CheckArgs) -> int:
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


async def _run(settings: AllSettings) -> int:
    stop = asyncio.Event()
    app.install_stop_signals(stop)
    with runtime.database(settings.base) as dsn, runtime.redis(settings.base) as redis_url:
        settings.base.redis_url = redis_url
        await _apply_migrations(dsn)
        metrics = Metrics()
        async with _sandbox_running(settings, stop), api_commands.api_running(dsn, settings, stop, metrics):
            observing = asyncio.create_task(observe(dsn, metrics, settings, stop, serve=False))
            dispatcher = CallbackDispatcher(dsn, settings.callbacks, metrics)
            callbacks_task = asyncio.create_task(_dispatcher_failed(dispatcher.run(stop), stop))
            worker_task: asyncio.Task[bool] | None = None
            channels: list[Channel] = []
            if settings.worker.enabled:
                worker = app.build_worker(dsn, settings, metrics)
                worker_task = asyncio.create_task(worker_pod.worker_failed(worker.run(stop)))
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
            failed = await callbacks_task or failed
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
            await ops_cli.print_quota(conn, "demo")
    finally:
        await conn.close()


def _print_howto() -> None:
    sms = next(name for name in registry.checkable() if Channel.SMS in registry.entry(name).channels)
    print(
        "\nReady. In another terminal:\n"
        "  .venv/bin/outbound enqueue --channel SMS --to +14155552671 --body 'hi' --wait\n"
        "  .venv/bin/outbound enqueue --channel SMS --to +14155550001 --body 'bad number' --wait"
        "   # permanent failure (invalid number)\n"
        "  .venv/bin/outbound enqueue --channel EMAIL --to a@example.com --subject hi --body 'hi' --wait\n"
        "  .venv/bin/outbound enqueue --channel WHATSAPP --to +14155552671 --template appointment_reminder"
        " --language en_US --param body+=Tuesday --param body+=10:30 --wait\n"
        f"  OUTBOUND_PROVIDER_KIND=sandbox .venv/bin/outbound check-provider {sms} --send-to +14155552671\n"
        "  .venv/bin/outbound status\n"
        "Ctrl-C stops everything (in-flight sends finish first).",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
