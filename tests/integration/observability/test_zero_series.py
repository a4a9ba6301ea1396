"""Counters exist at zero before their first event, so rate() and increase() see the first burst.

A counter series that appears at its burst value (5 failures of a new error code) has no earlier
sample: Prometheus reads it as no increase at all, and the runbook's failure-rate query misses the
start of an incident. Every label combination known in advance is created at zero when a sender
process starts.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from outbound_sender.domain import Channel, ErrorCode, NewMessage, Outcome
from outbound_sender.embedded import free_port
from tests.integration.observability import harness
from tests.processes import outbound, stop, wait_http, worker_env
from tests.prometheus import PrometheusServer

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get(name, {}).get(tuple(sorted(labels.items())))


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "supervisor-of-two"])
def test_a_fresh_worker_process_exposes_every_known_series_at_zero(db_dsn: str, processes: int) -> None:
    """Also through a supervisor's multiprocess exposition: one series per label set, summed at zero."""
    port = free_port()
    env = worker_env(db_dsn, "http://127.0.0.1:9", outbound_http_host="127.0.0.1", outbound_http_port=str(port))
    env["OUTBOUND_WORKER_PROCESSES"] = str(processes)
    process = outbound("worker", env=env, stdout=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/actuator/prometheus", timeout=60)
        deadline = time.monotonic() + 60  # every worker process started: their series exist
        while httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the worker pod never became ready"
            time.sleep(0.1)
        found = samples(httpx.get(f"http://127.0.0.1:{port}/actuator/prometheus", timeout=10).text)
    finally:
        stop(process)
    providers = {
        dict(labels)["channel"]: dict(labels)["provider"] for labels in found["outbound_message_send_success_total"]
    }
    assert set(providers) == {c.value for c in Channel}
    missing = []
    for channel in Channel:
        c, provider = channel.value, providers[channel.value]
        expected = [("outbound_worker_claimed_total", {"channel": c})]
        expected += [("outbound_message_ambiguous_send_total", {"channel": c, "provider": provider})]
        for code in ErrorCode:
            labels = {"channel": c, "error_code": code.value}
            expected += [("outbound_message_send_failure_total", {**labels, "provider": provider})]
            expected += [("outbound_message_retry_total", labels), ("outbound_message_dead_lettered_total", labels)]
        expected += [("outbound_message_superseded_result_total", {"channel": c, "outcome": o.value}) for o in Outcome]
        expected += [
            ("outbound_message_lease_recovered_total", {"channel": c, "status": s}) for s in ("QUEUED", "FAILED")
        ]
        missing += [(name, labels) for name, labels in expected if value(found, name, **labels) != 0.0]
    for source in ("twilio", "sendgrid", "whatsapp"):
        for event in ("recorded", "duplicate", "unmatched", "rejected", "resolved_ambiguous"):
            labels = {"provider": source, "outcome": event}
            if value(found, "outbound_webhook_events_total", **labels) != 0.0:
                missing.append(("outbound_webhook_events_total", labels))
    if value(found, "outbound_message_rerouted_total", from_channel="WHATSAPP", to_channel="SMS") != 0.0:
        missing.append(("outbound_message_rerouted_total", {"from_channel": "WHATSAPP", "to_channel": "SMS"}))
    assert not missing, missing


async def test_increase_sees_the_first_burst_of_a_new_error_code(db: asyncpg.Connection, db_dsn: str) -> None:
    """A real Prometheus scrapes a worker every second; five messages fail with an error code never
    seen before; increase() over the runbook's failure counter counts them."""
    query = 'sum(increase(outbound_message_send_failure_total{error_code="INVALID_PHONE_NUMBER"}[1m]))'
    async with harness.sandbox() as url, harness.sender_pod(db_dsn, url) as worker:
        prometheus = PrometheusServer([worker.target]).start()
        try:
            series = 'outbound_message_send_failure_total{error_code="INVALID_PHONE_NUMBER"}'
            async with asyncio.timeout(60):  # the zero series has been scraped at least twice
                while True:
                    answer = await prometheus.query(f"count_over_time({series}[1m])")
                    counts = [float(r["value"][1]) for r in answer.get("data", {}).get("result", [])]
                    if counts and min(counts) >= 2:
                        break
                    await asyncio.sleep(0.5)
            burst = [NewMessage("acme", Channel.SMS, harness.PERMANENT_SMS, body="x") for _ in range(5)]
            await harness.wait_all_final(db, await harness.send(db, burst))
            async with asyncio.timeout(60):
                while True:
                    result = (await prometheus.query(query)).get("data", {}).get("result", [])
                    if result and float(result[0]["value"][1]) >= 4.0:  # 5, give or take extrapolation
                        break
                    await asyncio.sleep(0.5)
        finally:
            prometheus.stop()
