"""Every SQL statement in the production runbook runs unchanged against our schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from outbound_sender.embedded import EmbeddedPostgres
from tests.runbook import runbook_text, sql_statements

STATEMENTS = sql_statements(runbook_text())

SEED = """
INSERT INTO outbound_message (org_id, dossier_id, channel, status, to_recipient, template_code,
                              attempt_count, max_attempts, error_code, error_message, updated_at, created_at)
VALUES ('ORG_ID', 'D1', 'WHATSAPP', 'QUEUED', '+15551230001', 'marketing', 3, 5, 'TEMPORARY_ERROR', 'x',
        now() - interval '3 hours', now() - interval '30 minutes'),
       ('ORG_ID', 'D2', 'SMS', 'FAILED', '+15551230002', NULL, 5, 5, 'TEMPORARY_ERROR', 'x',
        now() - interval '10 minutes', now() - interval '2 hours'),
       ('ORG_ID', 'D3', 'EMAIL', 'FAILED', 'a@example.com', NULL, 5, 5, 'INVALID_EMAIL', 'x',
        now() - interval '8 days', now() - interval '8 days'),
       ('ORG_ID', 'D4', 'SMS', 'SENDING', '+15551230004', NULL, 1, 5, NULL, NULL,
        now() - interval '20 minutes', now() - interval '20 minutes');
INSERT INTO outbound_attempt (outbound_message_id, attempt_no, channel, outcome, next_retry_at)
SELECT id, 3, channel, 'RETRY', now() + interval '1 hour' FROM outbound_message WHERE status = 'QUEUED';
INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit, throttle_until)
VALUES ('ORG_ID', 900, 1000, now() + interval '5 minutes');
"""


def test_the_runbook_has_sql() -> None:
    assert len(STATEMENTS) >= 15


@pytest.mark.parametrize("statement", STATEMENTS, ids=[f"sql{i:02d}" for i in range(len(STATEMENTS))])
async def test_runbook_statement_runs_unchanged(db: asyncpg.Connection, statement: str) -> None:
    await db.execute(SEED)
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute(statement)
    finally:
        await transaction.rollback()


async def test_seeded_rows_answer_the_runbook_queries(db: asyncpg.Connection) -> None:
    """The queries do not just parse: on a seeded queue they find what the runbook says they find."""
    await db.execute(SEED)
    dlq = [s for s in STATEMENTS if "attempt_count >= max_attempts" in s and s.startswith("SELECT")]
    rows = await db.fetch(dlq[0])
    assert {(r["channel"], r["error_code"]) for r in rows} == {
        ("SMS", "TEMPORARY_ERROR"),
        ("EMAIL", "INVALID_EMAIL"),
    }
    throttled = await db.fetch(next(s for s in STATEMENTS if "throttle_until > NOW()" in s))
    assert [r["org_id"] for r in throttled] == ["ORG_ID"]


def test_the_slow_query_view_answers_on_the_embedded_database_of_make_run(tmp_path: Path) -> None:
    """Scenario 6's pg_stat_statements query, as written, on the database `make run` uses: the
    embedded server in the state folder, migrated by the CLI (nothing created by hand)."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["OUTBOUND_STATE_DIR"] = str(tmp_path / "state")
    command = [sys.executable, "-m", "outbound_sender.cli", "migrate"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    [slow_queries] = [s for s in STATEMENTS if "pg_stat_statements" in s]

    async def ask(dsn: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.fetch("SELECT id FROM outbound_message WHERE status = 'QUEUED'")
            return await conn.fetch(slow_queries)
        finally:
            await conn.close()

    server = EmbeddedPostgres(tmp_path / "state" / "postgres").start()
    try:
        rows = asyncio.run(ask(server.dsn()))
    finally:
        server.stop()
    assert rows
    assert all("outbound_message" in r["query"] for r in rows)
