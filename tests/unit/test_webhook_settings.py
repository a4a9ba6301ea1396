"""The delivery webhooks as `outbound api` mounts them (api_commands.webhook_routers on load_settings()),
with OUTBOUND_WEBHOOK_* and WhatsApp's verify token from the environment, reached through httpx's
ASGI transport. Nothing here may reach the database."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from outbound_sender.api_commands import webhook_routers
from outbound_sender.config import load_settings
from outbound_sender.metrics import Metrics
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox


def no_database() -> object:
    pytest.fail("nothing may reach the database")


def webhooks(monkeypatch: pytest.MonkeyPatch, **env: str) -> httpx.AsyncClient:
    for name, value in ({"OUTBOUND_PROVIDER_KIND": "sandbox"} | env).items():
        monkeypatch.setenv(name, value)
    app = FastAPI()
    for router in webhook_routers(load_settings(), Metrics(), no_database):  # type: ignore[arg-type]
        app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_the_path_prefix_and_body_limit_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"OUTBOUND_WEBHOOK_PATH_PREFIX": "/hooks", "OUTBOUND_WEBHOOK_MAX_BODY_BYTES": "2048"}
    async with webhooks(monkeypatch, **env) as client:
        assert (await client.post("/webhooks/whatsapp", content=b"{}")).status_code == 404  # not the default
        assert (await client.post("/hooks/whatsapp", content=b"{}" + b" " * 1000)).status_code == 403  # unsigned
        assert (await client.post("/hooks/whatsapp", content=b"{}" + b" " * 3000)).status_code == 413
    monkeypatch.delenv("OUTBOUND_WEBHOOK_MAX_BODY_BYTES")
    async with webhooks(monkeypatch) as client:  # the default limit is 5 MB
        assert (await client.post("/hooks/whatsapp", content=b"{}" + b" " * 3000)).status_code == 403


def handshake(token: str) -> dict[str, str]:
    return {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}


@pytest.mark.parametrize("from_file", [False, True])
async def test_whatsapps_verification_handshake_answers_the_verify_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, from_file: bool
) -> None:
    token = "meta-handshake-7c41"
    if from_file:
        (tmp_path / "verify-token").write_text(token + "\n")
        env = {"WHATSAPP_VERIFY_TOKEN_FILE": str(tmp_path / "verify-token")}
    else:
        env = {"WHATSAPP_VERIFY_TOKEN": token}
    async with webhooks(monkeypatch, **env) as client:
        ours = await client.get("/webhooks/whatsapp", params=handshake(token))
        theirs = await client.get("/webhooks/whatsapp", params=handshake(whatsapp_sandbox.VERIFY_TOKEN))
    assert (ours.status_code, ours.text) == (200, "1158201444")
    assert theirs.status_code == 403
