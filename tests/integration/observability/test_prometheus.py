"""A real Prometheus scrapes a running sender and answers every PromQL expression of the runbook.

Two sender pods, as in production: a worker pod and an API-like pod without a worker; both export
the database-derived gauges. Traffic goes through the sandbox provider in waves spread over several
scrapes (successes, permanent and retried failures, an e-mail bounce, WhatsApp), so rate() and
histogram_quantile() have samples to work on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import asyncpg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from outbound_sender.metrics import Metrics
from tests.integration.observability import harness
from tests.monitoring import RULES, dashboard_expressions
from tests.prometheus import PrometheusServer
from tests.runbook import promql_expressions, runbook_text

# Scenario 4's symptom, written inline in the runbook rather than in a promql block.
INLINE = ["whatsapp_quota_used / whatsapp_quota_limit > 0.9"]
QUOTA_ROW = "INSERT INTO whatsapp_rate_limit (org_id, messages_sent_count, quota_limit) VALUES ('acme', 950, 1000)"


def has_data(answer: dict[str, Any]) -> bool:
    data = answer.get("data", {})
    return answer.get("status") == "success" and bool(data.get("result"))


async def all_answer(prometheus: PrometheusServer, expressions: list[str], timeout: float = 60) -> None:
    """Wait until every expression returns data (new series need a few scrapes)."""
    async with asyncio.timeout(timeout):
        while True:
            answers = await asyncio.gather(*(prometheus.query(e) for e in expressions))
            if all(has_data(a) for a in answers):
                return
            await asyncio.sleep(0.5)


async def scraping(prometheus: PrometheusServer, targets: int, timeout: float = 30) -> None:
    """Target discovery reaches the scrape loops only after a few seconds: wait for the first scrapes."""
    async with asyncio.timeout(timeout):
        while len((await prometheus.query("up == 1")).get("data", {}).get("result", [])) < targets:
            await asyncio.sleep(0.3)


async def traffic(db: asyncpg.Connection, waves: int = 4) -> None:
    for n in range(waves):
        ids = await harness.send(db, harness.wave(f"wave-{n}"))
        await harness.wait_all_final(db, ids)
        await asyncio.sleep(1.2)  # at least one scrape between waves


@pytest.mark.timeout(600)  # may install Debian's prometheus package on first use
async def test_every_runbook_promql_expression_answers_from_a_real_prometheus(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    expressions = promql_expressions(runbook_text()) + INLINE
    assert len(expressions) >= 10
    await db.execute(QUOTA_ROW)
    async with (
        harness.sandbox() as url,
        harness.sender_pod(db_dsn, url) as worker,
        harness.sender_pod(db_dsn, url, worker=False) as api,
    ):
        prometheus = PrometheusServer([worker.target, api.target], rule_files=[RULES]).start()
        try:
            await scraping(prometheus, targets=2)
            await traffic(db)
            with contextlib.suppress(TimeoutError):  # the assertions below name what has no data
                await all_answer(prometheus, expressions)
            for expr in expressions:
                answer = await prometheus.query(expr)
                assert answer["status"] == "success", (expr, answer)
                assert answer["data"]["result"], f"no data for runbook expression: {expr}"
            await check_latency_is_a_number(prometheus)
            check_labels_are_bounded(worker.metrics)
            await check_database_gauges_are_not_double_counted(prometheus, db)
            await check_rules_evaluate(prometheus)
            await check_dashboard_queries_parse(prometheus)
        finally:
            prometheus.stop()


BOUNDED_LABELS = {
    "channel",
    "reason",
    "provider",
    "error_code",
    "status",
    "outcome",
    "org_id",
    "le",
    "from_channel",
    "to_channel",
}


def check_labels_are_bounded(metrics: Metrics) -> None:
    """After real traffic, no label can hold a recipient, a message id or a correlation id."""
    text = generate_latest(metrics.registry).decode()
    names = {name for family in text_string_to_metric_families(text) for s in family.samples for name in s.labels}
    assert names <= BOUNDED_LABELS, names - BOUNDED_LABELS
    assert harness.OK_SMS not in text
    assert "wave-" not in text


async def check_latency_is_a_number(prometheus: PrometheusServer) -> None:
    expr = "histogram_quantile(0.95, rate(outbound_message_delivery_latency_seconds_bucket[5m]))"
    values = [float(r["value"][1]) for r in (await prometheus.query(expr))["data"]["result"]]
    assert any(not math.isnan(v) for v in values), values


async def check_database_gauges_are_not_double_counted(prometheus: PrometheusServer, db: asyncpg.Connection) -> None:
    """Both pods export the dead-letter queue size; max() is the database's count, sum() twice it."""
    dead = await db.fetchval(
        "SELECT count(*) FROM outbound_message WHERE status = 'FAILED' AND attempt_count >= max_attempts"
    )
    assert dead > 0
    async with asyncio.timeout(10):
        while True:
            answer = await prometheus.query("max(outbound_message_dead_letter_queue_size)")
            if float(answer["data"]["result"][0]["value"][1]) == dead:
                break
            await asyncio.sleep(0.3)
    per_pod = await prometheus.query("outbound_message_dead_letter_queue_size")
    assert len(per_pod["data"]["result"]) == 2


async def check_rules_evaluate(prometheus: PrometheusServer) -> None:
    await asyncio.sleep(1.5)  # one evaluation round
    groups = (await prometheus.get("/api/v1/rules"))["data"]["groups"]
    assert len(groups) >= 4
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


async def check_dashboard_queries_parse(prometheus: PrometheusServer) -> None:
    for title, expr in dashboard_expressions():
        answer = await prometheus.query(expr)
        assert answer["status"] == "success", (title, expr, answer.get("error"))
