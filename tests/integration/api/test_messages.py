"""Create, fetch, list and cancel over HTTP; rejected requests store nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.integration.api.conftest import EMAIL, ORG, SMS, WHATSAPP, count_messages
from tests.workers import one


async def test_create_then_fetch_a_message(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    created = await client.post("/v1/messages", json=SMS)
    assert created.status_code == 201, created.text
    message = created.json()
    assert message["status"] == "QUEUED"
    assert message["org_id"] == ORG
    assert created.headers["Location"] == f"/v1/messages/{message['id']}"
    fetched = await client.get(f"/v1/messages/{message['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["attempts"] == []
    assert fetched.json()["to"] == "+14155552671"
    row = await one(db, "SELECT org_id, channel, to_recipient, body FROM outbound_message WHERE id = $1", message["id"])
    assert dict(row) == {"org_id": ORG, "channel": "SMS", "to_recipient": "+14155552671", "body": SMS["body"]}


async def test_every_channel_is_accepted(client: httpx.AsyncClient) -> None:
    for body in (SMS, EMAIL, WHATSAPP):
        response = await client.post("/v1/messages", json=body)
        assert response.status_code == 201, response.text


async def test_priority_send_at_and_max_attempts_are_stored(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    send_at = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(microsecond=0)
    body = SMS | {"priority": 7, "send_at": send_at.isoformat(), "max_attempts": 3, "dossier_id": "D-42"}
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 201, response.text
    row = await one(db, "SELECT priority, send_at, due_at, max_attempts, dossier_id FROM outbound_message")
    assert (row["priority"], row["send_at"], row["max_attempts"], row["dossier_id"]) == (7, send_at, 3, "D-42")
    assert row["due_at"] == send_at  # the worker will not claim it before


async def test_a_rejected_request_names_each_field_and_stores_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    body = {"channel": "SMS", "to": "+1415555", "body": "x" * 1601, "subject": "no", "colour": "red"}
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    reasons = {f["field"]: f["reason"] for f in error["fields"]}
    assert reasons == {"colour": "is not a known field"}  # type errors first: unknown fields stop parsing
    response = await client.post("/v1/messages", json={k: v for k, v in body.items() if k != "colour"})
    reasons = {f["field"]: f["reason"] for f in response.json()["error"]["fields"]}
    assert set(reasons) == {"to", "body", "subject"}
    assert "E.164" in reasons["to"] or "valid phone number" in reasons["to"]
    assert "1601 characters; SMS allows at most 1600" in reasons["body"]
    assert await count_messages(db) == 0


async def test_recipients_are_checked_per_channel(client: httpx.AsyncClient) -> None:
    cases = [
        (SMS | {"to": "4155552671"}, "E.164"),
        (SMS | {"to": "+15551230000"}, "not a valid phone number"),
        (EMAIL | {"to": "not-an-address"}, "not a valid e-mail address"),
        (WHATSAPP | {"template_code": "Bad-Name"}, "WhatsApp template name"),
        (WHATSAPP | {"template_language": None}, "template_language"),
    ]
    for body, reason in cases:
        response = await client.post("/v1/messages", json=body)
        assert response.status_code == 422, body
        assert reason in response.text, response.text


async def test_malformed_json_is_a_422_naming_the_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", content=b'{"channel": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "(request body)"


async def test_a_batch_is_one_transaction(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    bad = {"messages": [SMS, EMAIL, SMS | {"to": "+1"}]}
    response = await client.post("/v1/messages/batch", json=bad)
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["messages[2].to"]
    assert await count_messages(db) == 0
    good = await client.post("/v1/messages/batch", json={"messages": [SMS, EMAIL, WHATSAPP]})
    assert good.status_code == 201, good.text
    ids = [m["id"] for m in good.json()["messages"]]
    assert [m["channel"] for m in good.json()["messages"]] == ["SMS", "EMAIL", "WHATSAPP"]
    assert ids == sorted(ids)
    assert await count_messages(db) == 3


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    huge = {"messages": [EMAIL | {"body": "x" * 250_000}] * 40}  # ~10 MB > 8 MiB
    response = await client.post("/v1/messages/batch", json=huge)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"  # the API's error shape, documented
    assert response.json()["error"]["code"] == "body_too_large"
    assert await count_messages(db) == 0


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"messages": ['
        for _ in range(40):
            yield b'{"channel": "EMAIL", "to": "ada@example.com", "subject": "s", "body": "' + b"x" * 250_000 + b'"},'
        yield b"]}"

    response = await client.post("/v1/messages/batch", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert await count_messages(db) == 0


async def test_list_filters_and_cursor_pagination(client: httpx.AsyncClient) -> None:
    for index in range(7):
        body = SMS | {"dossier_id": f"D{index % 2}"}
        await client.post("/v1/messages", json=body, headers={"X-Correlation-ID": f"run-{index % 3}"})
    await client.post("/v1/messages", json=WHATSAPP)
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/messages", params=params)).json()
        seen += [m["id"] for m in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8
    assert seen == sorted(seen, reverse=True)
    assert await _ids(client, {"dossier_id": "D1"}) == 3
    assert await _ids(client, {"channel": "WHATSAPP"}) == 1
    assert await _ids(client, {"template_code": "appointment_reminder"}) == 1
    assert await _ids(client, {"correlation_id": "run-0"}) == 3
    assert await _ids(client, {"status": "QUEUED", "channel": "SMS"}) == 7
    assert await _ids(client, {"status": "SENT"}) == 0


async def test_list_time_range(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    for _ in range(3):
        await client.post("/v1/messages", json=SMS)
    await db.execute(
        "UPDATE outbound_message SET created_at = '2026-01-01T00:00:00Z' "
        "WHERE id = (SELECT min(id) FROM outbound_message)"
    )
    window = {"created_after": "2025-12-31T00:00:00Z", "created_before": "2026-01-02T00:00:00+00:00"}
    assert await _ids(client, window) == 1
    assert await _ids(client, {"created_after": "2026-01-02T00:00:00Z"}) == 2
    naive = await client.get("/v1/messages", params={"created_after": "2026-01-02T00:00:00"})
    assert naive.status_code == 422
    assert "time zone" in naive.text


async def test_list_rejects_unknown_filters_and_bad_cursors(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/v1/messages", params={"org_id": "globex"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["fields"][0] == {
        "field": "org_id",
        "location": "query",
        "reason": "is not a known field",
    }
    bad = await client.get("/v1/messages", params={"cursor": "bm9wZQ"})
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"] == "cursor"


async def _ids(client: httpx.AsyncClient, params: dict[str, str]) -> int:
    response = await client.get("/v1/messages", params=params | {"limit": "200"})
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


async def test_cancel_a_queued_message(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    message_id = (await client.post("/v1/messages", json=SMS)).json()["id"]
    cancelled = await client.post(f"/v1/messages/{message_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    again = await client.post(f"/v1/messages/{message_id}/cancel")
    assert again.status_code == 200
    assert again.json()["status"] == "CANCELLED"
    assert await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", message_id) == "CANCELLED"


async def test_a_message_past_queued_cannot_be_cancelled(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    message_id = (await client.post("/v1/messages", json=SMS)).json()["id"]
    for status in ("SENDING", "SENT", "FAILED"):
        await db.execute("UPDATE outbound_message SET status = $2 WHERE id = $1", message_id, status)
        response = await client.post(f"/v1/messages/{message_id}/cancel")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "not_cancellable"
        assert status in response.json()["error"]["message"]
        assert await db.fetchval("SELECT status FROM outbound_message WHERE id = $1", message_id) == status


async def test_fetch_shows_attempts_and_delivery_state(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    message_id = (await client.post("/v1/messages", json=SMS)).json()["id"]
    await db.execute(
        """INSERT INTO outbound_attempt
                  (outbound_message_id, attempt_no, channel, provider, outcome, error_code, http_status)
           VALUES ($1, 1, 'SMS', 'twilio', 'RETRY', 'TEMPORARY_ERROR', 503),
                  ($1, 2, 'SMS', 'twilio', 'SENT', NULL, 201)""",
        message_id,
    )
    await db.execute(
        "UPDATE outbound_message SET status = 'SENT', delivery_status = 'delivered', delivery_updated_at = now() "
        "WHERE id = $1",
        message_id,
    )
    detail = (await client.get(f"/v1/messages/{message_id}")).json()
    assert [(a["attempt_no"], a["outcome"], a["error_code"]) for a in detail["attempts"]] == [
        (1, "RETRY", "TEMPORARY_ERROR"),
        (2, "SENT", None),
    ]
    assert detail["status"] == "SENT"
    assert detail["delivery_status"] == "delivered"


async def test_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    for path in ("/v1/messages/999999", "/v1/messages/9223372036854775807"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert (await client.post("/v1/messages/999999/cancel")).status_code == 404


@pytest.mark.parametrize("name", ["created_after", "created_before"])
async def test_a_list_filter_past_year_9999_in_utc_is_a_client_error(client: httpx.AsyncClient, name: str) -> None:
    """It answered 500: the instant overflowed when converted to UTC."""
    response = await client.get("/v1/messages", params={name: "9999-12-31T23:59:59-23:59"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert [(f["field"], f["location"]) for f in error["fields"]] == [(name, "query")]
    assert "before 9000-01-01" in error["fields"][0]["reason"]


async def test_an_email_subject_with_a_unicode_line_separator_is_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    for separator in ("\u2028", "\u2029", "\x85"):
        response = await client.post("/v1/messages", json=EMAIL | {"subject": f"Hi{separator}Bcc: x@example.com"})
        assert response.status_code == 422, response.text
        assert [f["field"] for f in response.json()["error"]["fields"]] == ["subject"]
    assert await count_messages(db) == 0
