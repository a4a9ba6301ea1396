"""The runbook's manual actions as `outbound` commands (docs/runbook.md names each one).

Every command that changes data shows what matches first (a count and a sample); `--dry-run` stops
there and changes nothing. A change needs `--reason`, runs in batches of `--batch-size` rows (one
transaction each, with a progress bar on large sets) and leaves a row in ops_audit (who, when, what,
why, how many) that `outbound audit` lists.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import asyncpg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from outbound_sender.cli_support import connection, duration, err, execute, fail, out
from outbound_sender.config import AllSettings
from outbound_sender.domain import Channel, CircuitMode, Status
from outbound_sender.store import ops
from outbound_sender.store.ops import Audit, MessageFilter

HELD_CODES = ("QUOTA_EXCEEDED", "RATE_LIMIT_EXCEEDED")


def _default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# Options every change takes.
DryRun = Annotated[bool, typer.Option("--dry-run", help="show what would change (count and sample); change nothing")]
Reason = Annotated[
    str | None, typer.Option(help="why (kept in the audit row); required unless --dry-run", show_default=False)
]
Actor = Annotated[
    str | None,
    typer.Option(envvar="OUTBOUND_ACTOR", help="who acts (default: login name @ host)", show_default=False),
]
BatchSize = Annotated[int, typer.Option(min=1, max=10000, help="rows per transaction")]
Sample = Annotated[int, typer.Option(min=0, max=1000, help="matching rows shown before the change")]
Everything = Annotated[bool, typer.Option("--all", help="take every message of the status (no other filter needed)")]
# Selections.
Org = Annotated[str | None, typer.Option(help="one organisation")]
ChannelOpt = Annotated[Channel | None, typer.Option("--channel", case_sensitive=False, help="one channel")]
ErrorCodes = Annotated[list[str] | None, typer.Option("--error-code", help="error code, repeatable")]
Ids = Annotated[list[int] | None, typer.Option("--id", help="message id, repeatable")]
Templates = Annotated[list[str] | None, typer.Option("--template", help="only this template, repeatable")]
ExceptTemplates = Annotated[
    list[str] | None,
    typer.Option("--except-template", help="not this template, repeatable (messages without one are left, as NOT IN)"),
]


def _duration_option(flag: str, help_text: str) -> Any:
    return typer.Option(flag, parser=duration, metavar="DURATION", help=help_text + " (90s, 10m, 2h, 7d)")


@dataclass(frozen=True)
class Change:
    """How a change runs: dry or real, who and why, batch size, sample shown."""

    dry_run: bool
    reason: str | None
    actor: str | None
    batch_size: int = 500
    sample: int = 10

    def audit(self) -> Audit:
        """Who and why; exits with a clear message when --reason is missing."""
        if not self.reason or not self.reason.strip():
            raise fail("--reason is required for a change (or use --dry-run to only look)")
        return Audit(actor=self.actor or _default_actor(), reason=self.reason.strip())


def _check_first(change: Change) -> None:
    if not change.dry_run:
        change.audit()


def _selection(status: Status, everything: bool | None = None, **given: Any) -> MessageFilter:
    """The filter from the options given (repeatable ones as tuples). Unless `everything` is None
    (an action whose own option narrows it), a selection without any filter needs --all."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v not in (None, [])}
    selection = MessageFilter(status=status, **values)
    if everything is False and not values:
        raise fail("name what to take (--id, --org, --channel, --error-code, ...) or say --all")
    return selection


def _sample_table(title: str, rows: list[asyncpg.Record]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("id", "org", "channel", "status", "error", "attempts", "template", "updated"):
        table.add_column(name)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["org_id"],
            row["channel"],
            row["status"],
            row["error_code"] or "",
            f"{row['attempt_count']}/{row['max_attempts']}",
            row["template_code"] or "",
            f"{row['updated_at']:%Y-%m-%d %H:%M:%S}",
        )
    return table


@contextmanager
def _progress(total: int, batch_size: int) -> Iterator[Any]:
    """A progress bar on stderr when the set takes more than one batch; yields on_batch."""
    if total <= batch_size:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
    ) as progress:
        task = progress.add_task("batches", total=total)

        def advance(looked_at: int, _changed: int) -> None:
            progress.advance(task, looked_at)

        yield advance


async def _message_action(
    settings: AllSettings,
    action: str,
    verb: str,
    *,
    selection: MessageFilter,
    change: Change,
    extra: tuple[Any, ...] = (),
    params: dict[str, Any] | None = None,
) -> int:
    async with connection(settings) as conn:
        first = await ops.preview(conn, selection, sample=change.sample)
        out.print(f"{action}: {first.matched} message(s) match")
        if first.sample:
            shown = f"first {len(first.sample)} of {first.matched}"
            out.print(_sample_table(shown, first.sample))
        if change.dry_run:
            out.print(f"dry run: {first.matched} message(s) would be {verb}; nothing changed")
            return 0
        with _progress(first.matched, change.batch_size) as on_batch:
            result = await ops.run_batches(
                conn,
                action,
                selection,
                change.audit(),
                extra=extra,
                params=params,
                batch_size=change.batch_size,
                on_batch=on_batch,
            )
    out.print(
        f"{action}: {verb} {result.changed} of {result.matched} message(s) in {result.batches} batch(es) "
        f"of at most {change.batch_size} (audit #{result.audit_id})"
    )
    return 0


def _run_action(action: str, verb: str, selection: MessageFilter, change: Change, **more: Any) -> None:
    _check_first(change)
    execute("ops", lambda settings: _message_action(settings, action, verb, selection=selection, change=change, **more))


# -- dead letters -----------------------------------------------------------------------------------

dead_letter = typer.Typer(help="the dead-letter queue: list, retry, discard", no_args_is_help=True)


@dead_letter.command("list")
def dead_letter_list(
    *,
    channel: ChannelOpt = None,
    error_code: Annotated[str | None, typer.Option(help="one error code")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="rows of each table")] = 20,
) -> None:
    """dead letters by channel and error code, then the latest ones (runbook scenario 2, steps 1-2)"""

    async def show(settings: AllSettings) -> int:
        async with connection(settings) as conn:
            summary = await ops.dead_letter_summary(conn, channel.value if channel else None, limit)
            latest = await ops.dead_letters(conn, channel.value if channel else None, error_code, limit)
        table = Table(title="dead letters by channel and error code", title_justify="left")
        for name in ("channel", "error_code", "count", "last_occurrence"):
            table.add_column(name)
        for row in summary:
            table.add_row(row["channel"], row["error_code"] or "", str(row["count"]), str(row["last_occurrence"]))
        out.print(table)
        recent = Table(title="latest dead letters", title_justify="left")
        for name in ("id", "org", "channel", "error_code", "error_message", "to", "template", "updated"):
            recent.add_column(name)
        for row in latest:
            recent.add_row(
                str(row["id"]),
                row["org_id"],
                row["channel"],
                row["error_code"] or "",
                row["error_message"] or "",
                row["to_recipient"],
                row["template_code"] or "",
                f"{row['updated_at']:%Y-%m-%d %H:%M:%S}",
            )
        out.print(recent)
        return 0

    execute("ops", show)


@dead_letter.command("retry")
def dead_letter_retry(
    *,
    error_code: ErrorCodes = None,
    channel: ChannelOpt = None,
    org: Org = None,
    message_id: Ids = None,
    failed_within: Annotated[
        dt.timedelta | None, _duration_option("--failed-within", "only those that failed within this long")
    ] = None,
    everything: Everything = False,
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
    batch_size: BatchSize = 500,
    sample: Sample = 10,
) -> None:
    """requeue FAILED messages with their attempts and error reset (runbook scenario 2, step 4)"""
    selection = _selection(
        Status.FAILED,
        everything,
        org=org,
        channel=channel,
        error_codes=error_code,
        ids=message_id,
        updated_within=failed_within,
    )
    _run_action("dead-letter retry", "requeued", selection, Change(dry_run, reason, actor, batch_size, sample))


@dead_letter.command("discard")
def dead_letter_discard(
    *,
    error_code: ErrorCodes = None,
    channel: ChannelOpt = None,
    org: Org = None,
    message_id: Ids = None,
    everything: Everything = False,
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
    batch_size: BatchSize = 500,
    sample: Sample = 10,
) -> None:
    """take FAILED messages out of the queue into the archive, with their attempts (nothing is lost)"""
    selection = _selection(Status.FAILED, everything, org=org, channel=channel, error_codes=error_code, ids=message_id)
    _run_action("dead-letter discard", "archived", selection, Change(dry_run, reason, actor, batch_size, sample))


# -- message actions --------------------------------------------------------------------------------

Final = Literal["FAILED", "CANCELLED", "SENT"]


def archive_command(
    *,
    older_than: Annotated[dt.timedelta, _duration_option("--older-than", "not updated for this long")],
    status: Annotated[Final, typer.Option(case_sensitive=False, help="final status")] = "FAILED",
    channel: ChannelOpt = None,
    org: Org = None,
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
    batch_size: BatchSize = 500,
    sample: Sample = 10,
) -> None:
    """move old messages to outbound_message_archive, their attempts to outbound_attempt_archive
    (runbook scenario 2, step 5)"""
    selection = MessageFilter(status=Status(status.upper()), org=org, channel=channel, not_updated_for=older_than)
    _run_action("archive", "archived", selection, Change(dry_run, reason, actor, batch_size, sample))


def reschedule_command(
    *,
    delay: Annotated[dt.timedelta | None, _duration_option("--in", "not before this long from now (defer)")] = None,
    now: Annotated[bool, typer.Option("--now", help="due at once: clear the retry times (force a retry)")] = False,
    channel: ChannelOpt = None,
    org: Org = None,
    template: Templates = None,
    except_template: ExceptTemplates = None,
    message_id: Ids = None,
    not_updated_for: Annotated[
        dt.timedelta | None, _duration_option("--not-updated-for", "only those not updated for this long")
    ] = None,
    everything: Everything = False,
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
    batch_size: BatchSize = 500,
    sample: Sample = 10,
) -> None:
    """move QUEUED messages in time: defer them (--in 4h, runbook scenario 4 option C) or make them
    due at once (--now, scenario 5 step 5)"""
    if (delay is None) == (not now):
        raise fail("say either --in DURATION or --now")
    selection = _selection(
        Status.QUEUED,
        everything,
        org=org,
        channel=channel,
        ids=message_id,
        templates=template,
        except_templates=except_template,
        not_updated_for=not_updated_for,
    )
    change = Change(dry_run, reason, actor, batch_size, sample)
    if now:
        _run_action("reschedule now", "made due now", selection, change)
    else:
        assert delay is not None
        params = {"in_seconds": delay.total_seconds()}
        _run_action("reschedule", "deferred", selection, change, extra=(delay,), params=params)


def cancel_command(
    *,
    message_id: Ids = None,
    org: Org = None,
    channel: ChannelOpt = None,
    template: Templates = None,
    everything: Everything = False,
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
    batch_size: BatchSize = 500,
    sample: Sample = 10,
) -> None:
    """cancel QUEUED messages (a SENDING one is already with its provider and is left alone)"""
    selection = _selection(Status.QUEUED, everything, org=org, channel=channel, ids=message_id, templates=template)
    _run_action("cancel", "cancelled", selection, Change(dry_run, reason, actor, batch_size, sample))


def reset_stale_command(
    *,
    older_than: Annotated[dt.timedelta, _duration_option("--older-than", "SENDING and untouched for this long")] = (
        dt.timedelta(minutes=10)
    ),
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
    batch_size: BatchSize = 500,
    sample: Sample = 10,
) -> None:
    """SENDING messages untouched for long back to QUEUED (runbook scenario 5, step 4); a message
    whose lease still runs is never taken from its worker"""
    selection = MessageFilter(status=Status.SENDING, not_updated_for=older_than)
    _run_action("reset-stale", "requeued", selection, Change(dry_run, reason, actor, batch_size, sample))


# -- WhatsApp quota and throttle --------------------------------------------------------------------

quota = typer.Typer(
    help="WhatsApp quota per organisation: show (the default), set, halve, release held messages",
    invoke_without_command=True,
)


async def print_quota(conn: asyncpg.Connection, org: str | None) -> None:
    """The runbook's scenario-4 view, one line per organisation."""
    rows = await ops.quota_status(conn, org)
    if not rows:
        print("no WhatsApp quota in use yet" + (f" for {org}" if org else ""))
    for row in rows:
        throttle = f"  throttled until {row['throttle_until']}" if row["throttle_until"] else ""
        print(
            f"{row['org_id']:<16} used {row['used']}/{row['quota_limit']} ({row['used_percent']}%)"
            f"  remaining {row['remaining']}  resets {row['reset_at']:%Y-%m-%d %H:%M:%S%z}{throttle}"
        )


def _show_quota(org: str | None) -> None:
    async def show(settings: AllSettings) -> int:
        async with connection(settings) as conn:
            await print_quota(conn, org)
        return 0

    execute("quota", show)


@quota.callback()
def quota_default(ctx: typer.Context, org: Org = None) -> None:
    """WhatsApp quota per organisation (used, remaining, reset, throttle)"""
    if ctx.invoked_subcommand is None:
        _show_quota(org)


@quota.command("show")
def quota_show(org: Org = None) -> None:
    """used, remaining, reset and throttle per organisation (runbook scenario 4, step 1)"""
    _show_quota(org)


def _ledger(action: ops.LedgerAction, org: str, change: Change, value: int | None = None) -> None:
    _check_first(change)

    async def apply(settings: AllSettings) -> int:
        who = None if change.dry_run else change.audit()
        async with connection(settings) as conn:
            try:
                done = await ops.change_ledger(conn, action, org, who, value)
            except ops.NoLedger as missing:
                raise fail(str(missing), 1) from None
        changed = {k: (done.before[k], done.after[k]) for k in done.before if done.before[k] != done.after[k]}
        what = ", ".join(f"{k} {before} -> {after}" for k, (before, after) in changed.items()) or "no change"
        prefix = "dry run: would change" if change.dry_run else "changed"
        out.print(f"{action} {org}: {prefix} {what}; held WhatsApp messages released: {done.released}")
        if change.dry_run:
            out.print("dry run: nothing changed")
        else:
            out.print(f"(audit #{done.audit_id})")
        return 0

    execute("ops", apply)


@quota.command("set")
def quota_set(
    *,
    org: Annotated[str, typer.Option(help="the organisation")],
    limit: Annotated[int, typer.Option(min=0, help="the new quota_limit")],
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
) -> None:
    """set the organisation's quota_limit; a raise releases its held messages at once"""
    _ledger("quota set", org, Change(dry_run, reason, actor), limit)


@quota.command("halve")
def quota_halve(
    *,
    org: Annotated[str, typer.Option(help="the organisation")],
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
) -> None:
    """halve quota_limit to slow consumption (runbook scenario 4, option B)"""
    _ledger("quota halve", org, Change(dry_run, reason, actor))


@quota.command("release")
def quota_release(
    *,
    org: Annotated[str, typer.Option(help="the organisation")],
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
    batch_size: BatchSize = 500,
    sample: Sample = 10,
) -> None:
    """make the organisation's held WhatsApp messages (QUOTA_EXCEEDED, RATE_LIMIT_EXCEEDED) due now;
    what still does not fit is held again without using an attempt"""
    selection = MessageFilter(
        status=Status.QUEUED, org=org, channel=Channel.WHATSAPP, error_codes=HELD_CODES, held_only=True
    )
    _run_action("quota release", "released", selection, Change(dry_run, reason, actor, batch_size, sample))


throttle = typer.Typer(help="WhatsApp throttles: show, clear", no_args_is_help=True)


@throttle.command("show")
def throttle_show() -> None:
    """organisations throttled now (runbook scenario 1, step 3)"""

    async def show(settings: AllSettings) -> int:
        async with connection(settings) as conn:
            rows = await ops.throttled(conn)
        table = Table(title=f"{len(rows)} throttled organisation(s)", title_justify="left")
        for name in ("org_id", "throttle_until", "messages_sent_count", "quota_limit", "reset_at"):
            table.add_column(name)
        for row in rows:
            table.add_row(
                *(
                    str(row[name])
                    for name in ("org_id", "throttle_until", "messages_sent_count", "quota_limit", "reset_at")
                )
            )
        out.print(table)
        return 0

    execute("ops", show)


@throttle.command("clear")
def throttle_clear(
    *,
    org: Annotated[str, typer.Option(help="the organisation")],
    reason: Reason = None,
    dry_run: DryRun = False,
    actor: Actor = None,
) -> None:
    """lift the organisation's throttle; the messages it held become due"""
    _ledger("throttle clear", org, Change(dry_run, reason, actor))


# -- providers and audit ----------------------------------------------------------------------------

provider = typer.Typer(help="providers as the workers see them", no_args_is_help=True)


@provider.command("status")
def provider_status() -> None:
    """each provider's switch, circuit, batch size, its channel's queue and its last 5 minutes"""

    async def show(settings: AllSettings) -> int:
        async with connection(settings) as conn:
            rows = await ops.provider_status(conn)
        if not rows:
            out.print("no provider_control rows: providers send as configured (no operator has published any)")
            return 0
        table = Table(title="providers", title_justify="left")
        columns = ("provider", "channel", "kind", "enabled", "priority", "circuit", "since", "batch", "queued")
        for name in (*columns, "success 5m"):
            table.add_column(name)
        for row in rows:
            circuit = row["circuit_state"] + (
                "" if row["circuit_mode"] == CircuitMode.AUTO else f" ({row['circuit_mode']})"
            )
            rate = f"{100 * row['sent'] / row['calls']:.1f}% of {row['calls']}" if row["calls"] else "-"
            table.add_row(
                row["provider"],
                row["channel"],
                row["kind"],
                "yes" if row["enabled"] else "no",
                str(row["priority"]),
                circuit,
                f"{row['circuit_since']:%Y-%m-%d %H:%M:%S}",
                str(row["batch_size"]),
                str(row["queued"]),
                rate,
            )
        out.print(table)
        return 0

    execute("ops", show)


def audit_command(
    *,
    action: Annotated[str | None, typer.Option(help="only this action, e.g. 'dead-letter retry'")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
) -> None:
    """the changes made with these commands: who, when, what, why, how many (latest first)"""

    async def show(settings: AllSettings) -> int:
        async with connection(settings) as conn:
            rows = await ops.audit_rows(conn, action, limit)
        table = Table(title=f"{len(rows)} audited change(s)", title_justify="left")
        for name in ("id", "started", "actor", "action", "reason", "matched", "changed", "batches", "outcome", "what"):
            table.add_column(name)
        for row in rows:
            what = json.dumps({**row["params"], **row["result"]}, separators=(",", ":"), default=str)
            table.add_row(
                str(row["id"]),
                f"{row['started_at']:%Y-%m-%d %H:%M:%S}",
                f"{row['actor']} ({row['db_user']})",
                row["action"],
                row["reason"],
                str(row["matched"]),
                str(row["changed"]),
                str(row["batches"]),
                row["outcome"],
                what,
            )
        out.print(table)
        return 0

    execute("ops", show)


def register(cli: typer.Typer) -> None:
    """Add the ops commands to the `outbound` command."""
    cli.add_typer(dead_letter, name="dead-letter")
    cli.command("archive")(archive_command)
    cli.command("reschedule")(reschedule_command)
    cli.command("cancel")(cancel_command)
    cli.command("reset-stale")(reset_stale_command)
    cli.add_typer(quota, name="quota")
    cli.add_typer(throttle, name="throttle")
    cli.add_typer(provider, name="provider")
    cli.command("audit")(audit_command)
