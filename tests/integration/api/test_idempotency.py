"""Idempotency-Key, scoped per organisation: replay, conflict, and races that create one row."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from tests.integration.api.conftest import EMAIL, SMS, Api, count_messages


async def test_same_key_same_body_returns_the_original(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    headers = {"Idempotency-Key": "order-1"}
    first = await client.post("/v1/messages", json=SMS, headers=headers)
    # Same content, other key order and a new correlation id: still the same request.
    reordered = {"body": SMS["body"], "to": SMS["to"], "channel": "SMS"}
    again = await client.post("/v1/messages", json=reordered, headers=headers | {"X-Correlation-ID": "retry-2"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["correlation_id"] == first.json()["correlation_id"]
    assert await count_messages(db) == 1


async def test_same_key_other_body_is_a_409(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    headers = {"Idempotency-Key": "order-2"}
    await client.post("/v1/messages", json=SMS, headers=headers)
    other = await client.post("/v1/messages", json=SMS | {"body": "another text"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert "different request" in other.json()["error"]["message"]
    assert await count_messages(db) == 1


async def test_fifty_concurrent_requests_with_one_key_create_one_row(api: Api, db: asyncpg.Connection) -> None:
    limits = httpx.Limits(max_connections=50)
    async with api.client(limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/messages", json=SMS, headers={"Idempotency-Key": "burst"}) for _ in range(50))
        )
    assert sorted(r.status_code for r in responses) == [200] * 49 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_messages(db) == 1


async def test_keys_are_scoped_per_organisation(api: Api, db: asyncpg.Connection) -> None:
    async with api.client() as acme, api.client(api.other_token) as globex:
        a = await acme.post("/v1/messages", json=SMS, headers={"Idempotency-Key": "shared"})
        b = await globex.post("/v1/messages", json=SMS, headers={"Idempotency-Key": "shared"})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert await count_messages(db) == 2


async def test_a_batch_replays_whole_and_conflicts_whole(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    headers = {"Idempotency-Key": "batch-1"}
    batch = {"messages": [SMS, EMAIL]}
    first = await client.post("/v1/messages/batch", json=batch, headers=headers)
    again = await client.post("/v1/messages/batch", json=batch, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert [m["id"] for m in again.json()["messages"]] == [m["id"] for m in first.json()["messages"]]
    longer = await client.post("/v1/messages/batch", json={"messages": [SMS, EMAIL, SMS]}, headers=headers)
    shorter = await client.post("/v1/messages/batch", json={"messages": [SMS]}, headers=headers)
    assert (longer.status_code, shorter.status_code) == (409, 409)
    assert await count_messages(db) == 2  # the longer batch's extra row was rolled back


async def test_concurrent_batches_with_one_key_create_one_set(api: Api, db: asyncpg.Connection) -> None:
    batch = {"messages": [SMS, EMAIL, SMS]}
    async with api.client(limits=httpx.Limits(max_connections=10)) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/messages/batch", json=batch, headers={"Idempotency-Key": "b"}) for _ in range(10))
        )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert await count_messages(db) == 3


async def test_a_key_with_a_hash_sign_is_rejected(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    response = await client.post("/v1/messages", json=SMS, headers={"Idempotency-Key": "a#0"})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "Idempotency-Key"
    assert await count_messages(db) == 0
