"""Template parameters over the API: named (strings) and positional (lists), as the WhatsApp client
sends them, through the worker to the WhatsApp sandbox."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from outbound_sender.metrics import Metrics
from outbound_sender.providers import whatsapp
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.store import messages
from outbound_sender.worker.dispatch import Dispatcher
from tests.integration.api.conftest import EMAIL
from tests.integration.providers.conftest import CASES, serve
from tests.integration.providers.test_pipeline import worker

REMINDER: dict[str, Any] = {
    "channel": "WHATSAPP",
    "to": "+33612345678",
    "template_code": "appointment_reminder",  # the sandbox's template takes two body parameters
    "template_language": "en_US",
}


async def test_positional_whatsapp_parameters_reach_the_provider(
    client: httpx.AsyncClient, db: asyncpg.Connection, db_dsn: str
) -> None:
    params = {"header": ["Dr Who"], "body": ["Tuesday", "10:30"]}
    created = await client.post("/v1/messages", json=REMINDER | {"template_params": params})
    assert created.status_code == 201, created.text
    message_id = created.json()["id"]
    assert created.json()["template_params"] == params
    stored = await db.fetchval("SELECT template_params FROM outbound_message WHERE id = $1", message_id)
    assert whatsapp.components(stored) == [
        {"type": "header", "parameters": [{"type": "text", "text": "Dr Who"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Tuesday"}, {"type": "text", "text": "10:30"}]},
    ]
    case = next(c for c in CASES if c.name == "whatsapp")
    async with serve(whatsapp_sandbox.WhatsAppSandbox()) as url:
        metrics = Metrics()
        async with worker(db_dsn, Dispatcher([case.provider(url)], metrics=metrics), metrics):
            row = await messages.wait_final(db, message_id, timeout=30)
    assert (row["status"], row["error_code"]) == ("SENT", None), row["error_message"]


async def test_a_list_is_refused_where_the_provider_cannot_send_it(client: httpx.AsyncClient) -> None:
    named_list = await client.post("/v1/messages", json=REMINDER | {"template_params": {"name": ["Ada"]}})
    assert named_list.status_code == 422
    [problem] = named_list.json()["error"]["fields"]
    assert problem["field"] == "template_params.name"
    assert "header and body" in problem["reason"]
    bad_lists: list[dict[str, Any]] = [{"body": []}, {"body": ["x" * 1025]}, {"body": [1, 2]}, {"body": [["nested"]]}]
    for bad in bad_lists:
        response = await client.post("/v1/messages", json=REMINDER | {"template_params": bad})
        assert response.status_code == 422, bad


async def test_email_template_data_may_hold_lists(client: httpx.AsyncClient) -> None:
    template = {"template_code": "d-" + "0" * 32, "body": None, "subject": None}
    email = EMAIL | template | {"template_params": {"items": ["tea", "milk"], "name": "Ada"}}
    response = await client.post("/v1/messages", json=email)
    assert response.status_code == 201, response.text
    assert response.json()["template_params"] == {"items": ["tea", "milk"], "name": "Ada"}
