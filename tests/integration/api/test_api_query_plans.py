"""Query-plan regression for the API's queries: every list filter, the cursor and the look-ups use an
index (EXPLAIN FORMAT JSON on a realistic table), as the API's pool plans them (custom plans)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from outbound_sender.store.queries import sql
from tests.integration.test_query_plans import explain, index_names, scans_seq

ROWS = 60_000
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
async def big_db(db: asyncpg.Connection) -> asyncpg.Connection:
    await db.execute(
        """
        INSERT INTO outbound_message (org_id, channel, status, to_recipient, dossier_id, correlation_id,
                                      template_code, idempotency_key, created_at)
        SELECT 'org' || (n % 40),
               (ARRAY['SMS','EMAIL','WHATSAPP'])[1 + n % 3],
               CASE WHEN n % 50 = 0 THEN 'QUEUED' WHEN n % 31 = 0 THEN 'FAILED' ELSE 'SENT' END,
               '+1415555' || lpad((n % 10000)::text, 4, '0'),
               CASE WHEN n % 2 = 0 THEN 'D' || (n % 3000) END,
               'c' || (n / 10),
               CASE WHEN n % 3 = 2 THEN 'tpl_' || (n % 20) END,
               CASE WHEN n % 4 = 0 THEN 'k' || n END,
               '2026-01-01'::timestamptz + n * interval '1 minute'
          FROM generate_series(1, $1::int) AS n
        """,
        ROWS,
    )
    await db.execute(
        "INSERT INTO api_key (id, org_id, secret_hash) SELECT 'k' || n, 'org' || n, 'h' FROM generate_series(1, 500) n"
    )
    await db.execute("ANALYZE")
    await db.execute("SET plan_cache_mode = force_custom_plan")
    return db


def list_args(**filters: Any) -> list[Any]:
    names = ["status", "channel", "dossier_id", "template_code", "correlation_id", "created_after", "created_before"]
    cursor = filters.pop("cursor", (None, None))
    return ["org7", *(filters.get(name) for name in names), *cursor, 51]


# The index each list uses; a tuple when any one of them will do.
CASES: dict[str, tuple[dict[str, Any], str | tuple[str, ...]]] = {
    "no filter": ({}, "idx_outbound_message_org_created"),
    "status": ({"status": "QUEUED"}, "idx_outbound_message_org_status"),
    # Since migration 0012 the org_status index holds QUEUED, FAILED and CANCELLED rows only.
    "status SENT": ({"status": "SENT"}, "idx_outbound_message_org_created"),
    "status SENDING": (
        {"status": "SENDING"},
        ("idx_outbound_message_status_created", "idx_outbound_message_channel_status"),
    ),
    "dossier": ({"dossier_id": "D1234"}, "idx_outbound_message_org_dossier"),
    "correlation": ({"correlation_id": "c17"}, "idx_outbound_message_org_correlation"),
    "template": ({"template_code": "tpl_7"}, "idx_outbound_message_org_template"),
    "time range": (
        {"created_after": T0, "created_before": T0 + dt.timedelta(days=1)},
        "idx_outbound_message_org_created",
    ),
    "cursor": ({"cursor": (T0, 10_000)}, "idx_outbound_message_org_created"),
    "status and cursor": ({"status": "FAILED", "cursor": (T0, 10_000)}, "idx_outbound_message_org_status"),
}


@pytest.mark.parametrize("case", CASES)
async def test_list_filters_use_their_index(big_db: asyncpg.Connection, case: str) -> None:
    filters, index = CASES[case]
    plan = await explain(big_db, sql("api_list_messages"), *list_args(**filters))
    assert index_names(plan) & ({index} if isinstance(index, str) else set(index)), plan
    assert not scans_seq(plan, "outbound_message")


async def test_lookups_use_keys(big_db: asyncpg.Connection) -> None:
    plans = [
        await explain(big_db, sql("api_get_message"), 123, "org3"),
        await explain(big_db, sql("api_get_attempts"), 123, "org3"),
        await explain(big_db, sql("api_find_idempotent"), "org0", ["k40", "k80"]),
        await explain(big_db, sql("api_key_lookup"), "k17"),
    ]
    for plan in plans:
        assert index_names(plan), plan
        assert not scans_seq(plan, "outbound_message")
        assert not scans_seq(plan, "api_key")
    assert "uq_outbound_message_idempotency" in index_names(plans[2])
