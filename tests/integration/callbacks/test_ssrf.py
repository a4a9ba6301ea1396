"""Callback targets are public addresses only (unless OUTBOUND_CALLBACKS_ALLOW_PRIVATE): checked at
registration, and again at delivery, where a name re-pointed at an internal address gets nothing."""

from __future__ import annotations

import asyncpg
import pytest

from outbound_sender.callbacks.settings import CallbackSettings
from outbound_sender.metrics import Metrics
from tests.integration.api.conftest import ORG, serving
from tests.integration.callbacks.receiver import dispatching, receiving
from tests.workers import ScriptedProvider, enqueue_sms, running_worker, wait_for

PUBLIC = "93.184.216.34"


class Dns:
    """A resolver the test controls: name -> addresses (unknown names do not resolve)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, _port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"{host}: name does not resolve")
        return self.answers[host]


DNS = Dns(
    {
        "internal.example": ["10.1.2.3"],
        "metadata.example": ["169.254.169.254"],
        "mixed.example": [PUBLIC, "192.168.1.10"],
        "v6loop.example": ["::1"],
        "public.example": [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"],
    }
)
STRICT = CallbackSettings(allow_private=False, poll_interval_ms=50, retry_base_ms=100, retry_max_ms=400)

REFUSED = [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://10.0.0.7/hook",
    "http://172.16.5.4/hook",
    "http://192.168.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://0.0.0.0/hook",
    "http://100.64.0.1/hook",
    "https://internal.example/hook",
    "https://metadata.example/hook",
    "https://mixed.example/hook",
    "https://v6loop.example/hook",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_non_public_targets_are_refused_at_registration(db_dsn: str, url: str) -> None:
    async with serving(db_dsn, callbacks=STRICT, resolver=DNS) as api, api.client() as client:
        response = await client.post("/v1/callbacks", json={"url": url})
        assert response.status_code == 422, response.text
        [field] = response.json()["error"]["fields"]
        assert field["field"] == "url"
        assert "not a public address" in field["reason"]
        assert (await client.get("/v1/callbacks")).json()["data"] == []


async def test_localhost_by_the_systems_resolver_is_refused(db_dsn: str) -> None:
    async with serving(db_dsn, callbacks=STRICT) as api, api.client() as client:
        response = await client.post("/v1/callbacks", json={"url": "http://localhost:8080/hook"})
        assert response.status_code == 422, response.text


async def test_public_names_are_accepted_and_the_operator_setting_lets_private_ones_in(db_dsn: str) -> None:
    async with serving(db_dsn, callbacks=STRICT, resolver=DNS) as api, api.client() as client:
        assert (await client.post("/v1/callbacks", json={"url": "https://public.example/h"})).status_code == 201
        unknown = await client.post("/v1/callbacks", json={"url": "https://nowhere.example/h"})
        assert unknown.status_code == 422
        assert "does not resolve" in unknown.text
    allowing = STRICT.model_copy(update={"allow_private": True})
    async with serving(db_dsn, callbacks=allowing, resolver=DNS) as api, api.client() as client:
        for url in ("http://127.0.0.1/hook", "https://internal.example/hook", "http://[::1]:8080/hook"):
            assert (await client.post("/v1/callbacks", json={"url": url})).status_code == 201, url


async def test_a_name_rebound_to_loopback_after_registration_gets_no_request(
    db: asyncpg.Connection, db_dsn: str
) -> None:
    metrics = Metrics()
    dns = Dns({"rebind.example": [PUBLIC]})
    async with receiving() as receiver, serving(db_dsn, callbacks=STRICT, resolver=dns) as api, api.client() as client:
        port = receiver.url.rsplit(":", 1)[1]
        url = f"http://rebind.example:{port}/hook"
        assert (await client.post("/v1/callbacks", json={"url": url})).status_code == 201
        dns.answers["rebind.example"] = ["127.0.0.1"]  # where the receiver listens
        await enqueue_sms(db, org_id=ORG)
        async with dispatching(db_dsn, STRICT, metrics, resolver=dns), running_worker(db_dsn, ScriptedProvider()):
            await wait_for(db, "SELECT attempts >= 3 FROM outbound_callback_outbox", timeout=60)
            row = await db.fetchrow("SELECT status, last_error FROM outbound_callback_outbox")
            assert row is not None
            assert row["status"] == "PENDING"
            assert "127.0.0.1" in row["last_error"]
            assert "not a public address" in row["last_error"]
            assert receiver.requests == []
            assert (
                metrics.registry.get_sample_value("outbound_callback_retried_total", {"reason": "refused_address"}) or 0
            ) >= 2
            # Pointed back at a public address, it would be delivered; allowed private, it is.
    allowing = STRICT.model_copy(update={"allow_private": True})
    async with receiving() as receiver2:
        await db.execute(
            "UPDATE outbound_callback_endpoint SET url = $1",
            receiver2.url.replace("127.0.0.1", "rebind.example") + "/hook",
        )
        dns.answers["rebind.example"] = ["127.0.0.1"]
        await db.execute("UPDATE outbound_callback_outbox SET next_attempt_at = now()")
        async with dispatching(db_dsn, allowing, resolver=dns):
            [request] = await receiver2.wait_for(1)
    assert request.headers["host"] == f"rebind.example:{receiver2.url.rsplit(':', 1)[1]}"
