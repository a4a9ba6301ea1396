"""The runbook's manual actions as `outbound` commands, against a real migrated PostgreSQL: a dry run
changes nothing, a real run changes what it said it would, every change leaves an audit row, and a
large set goes in bounded batches (one transaction per batch)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from outbound_sender import cli
from outbound_sender.domain import Status
from outbound_sender.store import ops
from outbound_sender.store.db import connect
from outbound_sender.store.ops import Audit, MessageFilter

REASON = ["--reason", "INC-42 provider fixed", "--actor", "alice"]


@pytest.fixture
def dsn(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    monkeypatch.delenv("OUTBOUND_ACTOR", raising=False)
    return db_dsn


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`outbound ARGS` in this process: its exit code, stdout, stderr."""
    capsys.readouterr()
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sql(dsn: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await connect(dsn)
        try:
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def script(dsn: str, statements: str) -> None:
    async def go() -> None:
        conn = await connect(dsn)
        try:
            await conn.execute(statements)
        finally:
            await conn.close()

    asyncio.run(go())


def seed(dsn: str, *rows: dict[str, Any]) -> list[int]:
    """Insert messages (defaults filled in); returns their ids in order."""
    ids = []
    for row in rows:
        values = {"org_id": "acme", "channel": "SMS", "to_recipient": "+14155552671", "body": "x", **row}
        columns = ", ".join(values)
        params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        inserted = sql(
            dsn, f"INSERT INTO outbound_message ({columns}) VALUES ({params}) RETURNING id", *values.values()
        )
        ids.append(int(inserted[0]["id"]))
    return ids


def snapshot(dsn: str) -> list[tuple[Any, ...]]:
    """Everything an action may touch, to prove that a dry run touched nothing."""
    tables = ["outbound_message", "outbound_attempt", "outbound_message_archive", "whatsapp_rate_limit", "ops_audit"]
    return [tuple(r) for t in tables for r in sql(dsn, f"SELECT * FROM {t} ORDER BY 1")]


def audit(dsn: str) -> list[asyncpg.Record]:
    return sql(dsn, "SELECT * FROM ops_audit ORDER BY id")


def failed(**extra: Any) -> dict[str, Any]:
    return {"status": "FAILED", "attempt_count": 5, "max_attempts": 5, "error_code": "TEMPORARY_ERROR", **extra}


def test_dead_letter_retry_dry_run_reason_real_run_and_audit(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = seed(
        dsn,
        failed(),
        failed(),
        failed(error_code="INVALID_PHONE_NUMBER"),
        failed(updated_at=sql(dsn, "SELECT now() - interval '3 hours' AS t")[0]["t"]),
    )
    selection = ["dead-letter", "retry", "--error-code", "TEMPORARY_ERROR", "--failed-within", "1h"]
    before = snapshot(dsn)
    code, out, _ = run(*selection, "--dry-run", capsys=capsys)
    assert code == 0
    assert "2 message(s) match" in out
    assert "dry run: 2 message(s) would be requeued; nothing changed" in out
    assert snapshot(dsn) == before

    code, _, err = run(*selection, capsys=capsys)
    assert (code, "--reason is required" in err) == (2, True)
    assert snapshot(dsn) == before

    code, out, _ = run(*selection, *REASON, capsys=capsys)
    assert code == 0, out
    assert "requeued 2 of 2 message(s) in 1 batch(es)" in out
    rows = {r["id"]: r for r in sql(dsn, "SELECT * FROM outbound_message")}
    assert [rows[i]["status"] for i in ids] == ["QUEUED", "QUEUED", "FAILED", "FAILED"]
    assert (rows[ids[0]]["attempt_count"], rows[ids[0]]["error_code"]) == (0, None)
    [row] = audit(dsn)
    assert (row["actor"], row["action"], row["reason"]) == ("alice", "dead-letter retry", "INC-42 provider fixed")
    assert (row["matched"], row["changed"], row["batches"], row["outcome"]) == (2, 2, 1, "DONE")
    assert row["params"]["error_codes"] == ["TEMPORARY_ERROR"]
    assert row["db_user"]
    assert row["finished_at"] is not None

    code, out, _ = run("audit", capsys=capsys)
    assert code == 0
    assert "dead-letter retry" in out
    assert "alice" in out
    assert "INC-42 provider fixed" in out


def test_without_actor_the_audit_names_outbound_actor_from_the_environment(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(dsn, failed())
    monkeypatch.setenv("OUTBOUND_ACTOR", "carol@oncall")
    code, out, _ = run("dead-letter", "retry", "--error-code", "TEMPORARY_ERROR", "--reason", "INC-43", capsys=capsys)
    assert code == 0, out
    [row] = audit(dsn)
    assert (row["actor"], row["action"]) == ("carol@oncall", "dead-letter retry")


def test_a_retry_takes_what_the_runbook_statement_takes(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The same selection as scenario 2, step 4, as the runbook writes it."""
    from tests.runbook import runbook_text, sql_statements

    [statement] = [s for s in sql_statements(runbook_text()) if "error_code = 'TEMPORARY_ERROR'" in s]
    three_hours = sql(dsn, "SELECT now() - interval '3 hours' AS t")[0]["t"]
    email = failed(channel="EMAIL", to_recipient="a@example.com")
    dead = seed(dsn, failed(), failed(error_code="QUOTA_EXCEEDED"), failed(updated_at=three_hours), failed(), email)
    seed(dsn, {"status": "QUEUED"})

    async def runbook_takes() -> set[int]:
        conn = await connect(dsn)
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(statement)  # sets updated_at = now(), the transaction's start
            return {r["id"] for r in await conn.fetch("SELECT id FROM outbound_message WHERE updated_at = now()")}
        finally:
            await transaction.rollback()
            await conn.close()

    expected = asyncio.run(runbook_takes())
    code, _, _ = run("dead-letter", "retry", "--error-code", "TEMPORARY_ERROR", "--failed-within", "1h", *REASON,
                     capsys=capsys)  # fmt: skip
    assert code == 0
    requeued = sql(dsn, "SELECT id FROM outbound_message WHERE status = 'QUEUED' AND id = ANY($1)", dead)
    assert {r["id"] for r in requeued} == expected
    assert expected == {dead[0], dead[3], dead[4]}


def test_a_large_set_goes_in_bounded_batches(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    sql(
        dsn,
        "INSERT INTO outbound_message (org_id, channel, to_recipient, status, attempt_count, max_attempts, error_code) "
        "SELECT 'acme', 'SMS', '+14155552671', 'FAILED', 5, 5, 'TEMPORARY_ERROR' FROM generate_series(1, 1203)",
    )
    code, out, _ = run("dead-letter", "retry", "--all", "--batch-size", "500", *REASON, capsys=capsys)
    assert code == 0, out
    assert "requeued 1203 of 1203 message(s) in 3 batch(es) of at most 500" in out
    # Rows changed in one transaction share its xmin: one transaction per batch, none larger.
    per_transaction = sql(dsn, "SELECT count(*) AS n FROM outbound_message GROUP BY xmin::text ORDER BY n DESC")
    assert [r["n"] for r in per_transaction] == [500, 500, 203]
    [row] = audit(dsn)
    assert (row["matched"], row["changed"], row["batches"]) == (1203, 1203, 3)


def test_archive_moves_old_dead_letters_with_their_attempts(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    old = sql(dsn, "SELECT now() - interval '8 days' AS t")[0]["t"]
    ids = seed(dsn, failed(updated_at=old), failed(updated_at=old), failed(), {"status": "QUEUED", "updated_at": old})
    sql(
        dsn,
        "INSERT INTO outbound_attempt (outbound_message_id, attempt_no, channel, outcome, error_code) "
        "SELECT id, n, 'SMS', 'RETRY', 'TEMPORARY_ERROR' FROM unnest($1::bigint[]) id, generate_series(1, 3) n",
        ids[:3],
    )
    before = snapshot(dsn)
    code, out, _ = run("archive", "--older-than", "7d", "--dry-run", capsys=capsys)
    assert (code, "2 message(s) match" in out) == (0, True)
    assert snapshot(dsn) == before

    code, out, _ = run("archive", "--older-than", "7d", *REASON, capsys=capsys)
    assert code == 0, out
    assert "archived 2 of 2" in out
    assert sorted(r["id"] for r in sql(dsn, "SELECT id FROM outbound_message")) == [ids[2], ids[3]]
    assert sorted(r["id"] for r in sql(dsn, "SELECT id FROM outbound_message_archive")) == ids[:2]
    kept = sql(dsn, "SELECT outbound_message_id AS id, count(*) AS n FROM outbound_attempt_archive GROUP BY 1")
    assert {r["id"]: r["n"] for r in kept} == {ids[0]: 3, ids[1]: 3}
    assert [r["action"] for r in audit(dsn)] == ["archive"]


def test_dead_letter_discard_archives_the_named_messages(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = seed(dsn, failed(), failed(), {"status": "QUEUED"})
    code, out, err = run("dead-letter", "discard", "--id", str(ids[0]), "--id", str(ids[2]), *REASON, capsys=capsys)
    assert code == 0, out + err
    assert "archived 1 of 1" in out  # the QUEUED one is not a dead letter
    assert [r["id"] for r in sql(dsn, "SELECT id FROM outbound_message_archive")] == [ids[0]]
    code, _, err = run("dead-letter", "discard", *REASON, capsys=capsys)
    assert code == 2
    assert "--all" in err


def test_dead_letter_list_shows_the_runbook_views(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(dsn, failed(), failed(), failed(channel="EMAIL", to_recipient="a@example.com", error_code="INVALID_EMAIL"))
    code, out, _ = run("dead-letter", "list", capsys=capsys)
    assert code == 0
    assert "TEMPORARY_ERROR" in out
    assert "INVALID_EMAIL" in out
    assert "a@example.com" in out
    assert audit(dsn) == []  # looking is not a change


def test_reschedule_defers_non_urgent_and_now_makes_due(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    whatsapp = {"channel": "WHATSAPP", "status": "QUEUED", "template_language": "en_US"}
    ids = seed(
        dsn,
        {**whatsapp, "template_code": "marketing"},
        {**whatsapp, "template_code": "urgent_alert"},
        {**whatsapp, "template_code": "appointment_reminder"},
    )
    urgent = ["--except-template", "urgent_alert", "--except-template", "appointment_reminder"]
    before = snapshot(dsn)
    code, out, _ = run("reschedule", "--in", "4h", "--channel", "WHATSAPP", *urgent, "--dry-run", capsys=capsys)
    assert (code, "1 message(s) match" in out, snapshot(dsn) == before) == (0, True, True)
    code, out, _ = run("reschedule", "--in", "4h", "--channel", "WHATSAPP", *urgent, *REASON, capsys=capsys)
    assert code == 0, out
    ahead = sql(dsn, "SELECT id FROM outbound_message WHERE updated_at > now() + interval '3 hours 59 minutes'")
    assert [r["id"] for r in ahead] == [ids[0]]

    sql(
        dsn,
        "INSERT INTO outbound_attempt (outbound_message_id, attempt_no, channel, outcome) "
        "VALUES ($1, 1, 'WHATSAPP', 'RETRY')",
        ids[1],
    )
    sql(dsn, "UPDATE outbound_attempt SET next_retry_at = now() + interval '1 hour'")  # mirrored to retry_at
    assert sql(dsn, "SELECT retry_at FROM outbound_message WHERE id = $1", ids[1])[0]["retry_at"] is not None
    code, out, _ = run("reschedule", "--now", "--id", str(ids[0]), "--id", str(ids[1]), *REASON, capsys=capsys)
    assert code == 0, out
    due = sql(dsn, "SELECT count(*) AS n FROM outbound_message WHERE due_at <= now() AND id = ANY($1)", ids[:2])
    assert due[0]["n"] == 2
    assert sql(dsn, "SELECT next_retry_at FROM outbound_attempt")[0]["next_retry_at"] is None
    assert [r["action"] for r in audit(dsn)] == ["reschedule", "reschedule now"]


def test_cancel_takes_queued_messages_only(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = seed(dsn, {"status": "QUEUED"}, {"status": "QUEUED", "org_id": "other"}, {"status": "SENDING"})
    code, _, err = run("cancel", *REASON, capsys=capsys)
    assert code == 2
    assert "--all" in err
    code, out, _ = run("cancel", "--org", "acme", *REASON, capsys=capsys)
    assert code == 0, out
    statuses = {r["id"]: r["status"] for r in sql(dsn, "SELECT id, status FROM outbound_message")}
    assert statuses == {ids[0]: "CANCELLED", ids[1]: "QUEUED", ids[2]: "SENDING"}
    [row] = audit(dsn)
    assert (row["action"], row["changed"]) == ("cancel", 1)


def test_reset_stale_never_takes_a_live_lease(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    old = sql(dsn, "SELECT now() - interval '20 minutes' AS t")[0]["t"]
    expired = {"status": "SENDING", "updated_at": old, "leased_until": old}
    live = {**expired, "leased_until": sql(dsn, "SELECT now() + interval '5 minutes' AS t")[0]["t"]}
    ids = seed(dsn, expired, live, {"status": "SENDING"})
    code, out, _ = run("reset-stale", "--older-than", "10m", *REASON, capsys=capsys)
    assert code == 0, out
    statuses = {r["id"]: r["status"] for r in sql(dsn, "SELECT id, status FROM outbound_message")}
    assert statuses == {ids[0]: "QUEUED", ids[1]: "SENDING", ids[2]: "SENDING"}


def held(code: str = "QUOTA_EXCEEDED") -> dict[str, Any]:
    return {"channel": "WHATSAPP", "status": "QUEUED", "org_id": "acme", "error_code": code}


def test_quota_set_halve_release_and_throttle_clear(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    sql(
        dsn,
        "INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit) VALUES ('acme', 100, 100)",
    )
    ids = seed(dsn, held(), held(), held("RATE_LIMIT_EXCEEDED"))
    sql(dsn, "UPDATE outbound_message SET retry_at = now() + interval '1 hour', claim_count = 1")

    before = snapshot(dsn)
    code, out, _ = run("quota", "set", "--org", "acme", "--limit", "200", "--dry-run", capsys=capsys)
    assert code == 0
    assert "quota_limit 100 -> 200" in out
    assert "released: 2" in out
    assert snapshot(dsn) == before

    code, out, _ = run("quota", "set", "--org", "acme", "--limit", "200", *REASON, capsys=capsys)
    assert (code, "released: 2" in out) == (0, True)
    assert sql(dsn, "SELECT quota_limit FROM whatsapp_rate_limit")[0]["quota_limit"] == 200

    code, out, _ = run("quota", "halve", "--org", "acme", *REASON, capsys=capsys)
    assert (code, "quota_limit 200 -> 100" in out) == (0, True)

    sql(dsn, "UPDATE whatsapp_rate_limit SET throttle_until = now() + interval '1 hour'")
    code, out, _ = run("throttle", "show", capsys=capsys)
    assert (code, "acme" in out) == (0, True)
    code, out, _ = run("throttle", "clear", "--org", "acme", *REASON, capsys=capsys)
    assert (code, "released: 1" in out) == (0, True)
    assert sql(dsn, "SELECT throttle_until FROM whatsapp_rate_limit")[0]["throttle_until"] is None

    sql(dsn, "UPDATE outbound_message SET retry_at = now() + interval '1 hour' WHERE id = ANY($1)", ids[:2])
    code, out, _ = run("quota", "release", "--org", "acme", "--dry-run", capsys=capsys)
    assert (code, "2 message(s) match" in out) == (0, True)
    code, out, _ = run("quota", "release", "--org", "acme", *REASON, capsys=capsys)
    assert (code, "released 2 of 2" in out) == (0, True)
    assert sql(dsn, "SELECT count(*) AS n FROM outbound_message WHERE retry_at > now()")[0]["n"] == 0

    actions = [(r["action"], r["changed"]) for r in audit(dsn)]
    assert actions == [("quota set", 1), ("quota halve", 1), ("throttle clear", 1), ("quota release", 2)]
    assert audit(dsn)[0]["result"]["released"] == 2

    code, out, _ = run("quota", "--org", "acme", capsys=capsys)  # the old form still shows the ledger
    assert (code, "used 100/100" in out) == (0, True)
    code, _, err = run("quota", "set", "--org", "nobody", "--limit", "5", *REASON, capsys=capsys)
    assert (code, "no WhatsApp quota row" in err) == (1, True)


def test_provider_status_shows_the_control_rows(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    sql(
        dsn,
        "INSERT INTO provider_control (provider, channel, kind, circuit_mode, circuit_state) "
        "VALUES ('twilio', 'SMS', 'twilio', 'ForceOpen', 'OPEN')",
    )
    seed(dsn, {"status": "QUEUED"})
    code, out, _ = run("provider", "status", capsys=capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if "twilio" in line)
    assert "OPEN (ForceOpen)" in line
    assert "SMS" in line


def test_the_installed_command_has_version_help_and_completion(dsn: str) -> None:
    def outbound(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "outbound_sender.cli", *args]
        return subprocess.run(command, env={**os.environ}, capture_output=True, text=True, timeout=120, check=False)

    version = outbound("--version")
    assert (version.returncode, version.stdout.startswith("outbound 0.")) == (0, True)
    helped = outbound("--help")
    for command in ("dead-letter", "archive", "reschedule", "cancel", "quota", "throttle", "provider", "audit"):
        assert command in helped.stdout
    # From a shell, as a user asks for it: the shell is detected from the parent process, so a test
    # run whose parent is no shell (a detached job) must not decide what this sees.
    shown = [sys.executable, "-m", "outbound_sender.cli", "--show-completion"]
    from_bash = ["bash", "-c", '"$@"; exit $?', "bash", *shown]  # the `exit` keeps bash as the parent
    completion = subprocess.run(from_bash, capture_output=True, text=True, timeout=120, check=False)
    assert "_OUTBOUND_COMPLETE" in completion.stdout, completion.stderr
    dry = outbound("cancel", "--all", "--dry-run")
    assert (dry.returncode, "0 message(s) match" in dry.stdout) == (0, True)


async def test_an_interrupted_action_keeps_its_committed_batches_and_says_so(db: asyncpg.Connection) -> None:
    await db.execute(
        "INSERT INTO outbound_message (org_id, channel, to_recipient, status, attempt_count, error_code) "
        "SELECT 'acme', 'SMS', '+14155552671', 'FAILED', 5, 'TEMPORARY_ERROR' FROM generate_series(1, 30)"
    )

    def ctrl_c(_looked_at: int, _changed: int) -> None:
        raise asyncio.CancelledError  # what asyncio.Runner raises in the command on Ctrl-C

    selection = MessageFilter(status=Status.FAILED)
    with pytest.raises(asyncio.CancelledError):
        await ops.run_batches(db, "dead-letter retry", selection, Audit(actor="bob", reason="x"), batch_size=10,
                              on_batch=ctrl_c)  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'QUEUED'") == 10
    row = await db.fetchrow("SELECT matched, changed, batches, outcome, finished_at FROM ops_audit")
    assert row is not None
    assert (row["matched"], row["changed"], row["batches"], row["outcome"]) == (30, 10, 1, "INTERRUPTED")
    assert row["finished_at"] is not None


async def test_a_blank_reason_or_actor_is_refused_by_the_model_and_the_table(db: asyncpg.Connection) -> None:
    with pytest.raises(ValidationError):
        Audit(actor="bob", reason="   ")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO ops_audit (actor, action, reason) VALUES ('bob', 'cancel', ' ')")


EVERY_CHANGE = {
    "dead-letter retry": ["dead-letter", "retry", "--all"],
    "dead-letter discard": ["dead-letter", "discard", "--all"],
    "archive": ["archive", "--older-than", "1d"],
    "reschedule": ["reschedule", "--in", "1h", "--all"],
    "reschedule now": ["reschedule", "--now", "--all"],
    "cancel": ["cancel", "--all"],
    "reset-stale": ["reset-stale", "--older-than", "10m"],
    "quota set": ["quota", "set", "--org", "acme", "--limit", "500"],
    "quota halve": ["quota", "halve", "--org", "acme"],
    "quota release": ["quota", "release", "--org", "acme"],
    "throttle clear": ["throttle", "clear", "--org", "acme"],
}


@pytest.mark.parametrize("action", EVERY_CHANGE)
def test_every_change_dry_runs_needs_a_reason_changes_and_is_audited(
    action: str, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    script(
        dsn,
        """
        INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit, throttle_until)
        VALUES ('acme', 10, 100, now() + interval '1 hour');
        INSERT INTO outbound_message (org_id, channel, to_recipient, status, attempt_count, error_code, updated_at,
                                      retry_at, leased_until)
        VALUES ('acme', 'SMS', '+14155552671', 'FAILED', 5, 'TEMPORARY_ERROR', now() - interval '2 days', NULL, NULL),
               ('acme', 'WHATSAPP', '+14155552671', 'QUEUED', 1, 'QUOTA_EXCEEDED', now(), now() + interval '1 hour',
                NULL),
               ('acme', 'SMS', '+14155552671', 'SENDING', 1, NULL, now() - interval '20 minutes', NULL,
                now() - interval '15 minutes');
        """,
    )
    before = snapshot(dsn)
    code, out, err = run(*EVERY_CHANGE[action], "--dry-run", capsys=capsys)
    assert code == 0, out + err
    assert "dry run" in out
    assert snapshot(dsn) == before
    code, _, err = run(*EVERY_CHANGE[action], capsys=capsys)
    assert code == 2, err
    assert snapshot(dsn) == before
    code, out, err = run(*EVERY_CHANGE[action], *REASON, capsys=capsys)
    assert code == 0, out + err
    assert snapshot(dsn) != before
    [row] = audit(dsn)
    assert (row["action"], row["actor"], row["outcome"]) == (action, "alice", "DONE")
    assert row["changed"] >= 1
