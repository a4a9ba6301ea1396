"""Authentication and tenancy: 401 without a valid key; another organisation's message is a plain 404."""

from __future__ import annotations

import asyncpg
import httpx

from outbound_sender.api.auth import new_key
from outbound_sender.store import api_keys
from tests.integration.api.conftest import SMS, Api, count_messages


async def test_requests_without_a_valid_key_are_401(api: Api, db: asyncpg.Connection) -> None:
    forged = new_key().token
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        cases = [
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
            {"Authorization": "Bearer not-a-key"},
            {"Authorization": f"Bearer {forged}"},
            {"Authorization": f"Bearer {api.token[:-1]}{'A' if api.token[-1] != 'A' else 'B'}"},
        ]
        for headers in cases:
            response = await anonymous.post("/v1/messages", json=SMS, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json()["error"]["code"] == "unauthorized"
    assert await count_messages(db) == 0


async def test_a_revoked_key_stops_working(api: Api, db: asyncpg.Connection) -> None:
    async with api.client() as client:
        assert (await client.get("/v1/messages")).status_code == 200
        key_id = api.token.split("_")[1]
        assert await api_keys.revoke(db, key_id) is not None
        assert (await client.get("/v1/messages")).status_code == 401


async def test_another_organisations_message_is_not_found(api: Api) -> None:
    async with api.client() as acme, api.client(api.other_token) as globex:
        mine = (await acme.post("/v1/messages", json=SMS | {"dossier_id": "D1"})).json()
        for response in (
            await globex.get(f"/v1/messages/{mine['id']}"),
            await globex.post(f"/v1/messages/{mine['id']}/cancel"),
        ):
            assert response.status_code == 404
            assert response.json()["error"] == {"code": "not_found", "message": "no such message", "fields": []}
        listed = await globex.get("/v1/messages", params={"dossier_id": "D1"})
        assert listed.json()["data"] == []
        assert (await acme.get(f"/v1/messages/{mine['id']}")).json()["status"] == "QUEUED"


async def test_the_key_is_stored_only_as_a_hash(api: Api, db: asyncpg.Connection) -> None:
    secret = api.token.split("_", 2)[2]
    rows = await db.fetch("SELECT * FROM api_key")
    assert len(rows) == 2
    assert all(secret not in str(dict(row)) for row in rows)
