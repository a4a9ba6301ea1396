"""The delivery webhooks as `outbound api` mounts them (api_commands.webhook_routers on load_settings()),
with OUTBOUND_WEBHOOK_* and WhatsApp's verify token from the environment, reached through httpx's
ASGI transport. Nothing here may reach the database."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from outbound_sender.api_commands import webhook_routers
from outbound_sender.config import load_settings
from outbound_sender.metrics import Metrics
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.webhooks import sendgrid as sendgrid_webhook
from outbound_sender.webhooks import whatsapp as whatsapp_webhook


class ReachedTheStore(Exception):
    """A verified receipt goes on to be recorded: here, the store raises this instead."""


def no_database() -> object:
    pytest.fail("nothing may reach the database")


def store_reached() -> object:
    raise ReachedTheStore


async def status(client: httpx.AsyncClient, path: str, raw: bytes, headers: dict[str, str]) -> int | str:
    """The answer's status, or "verified" when the receipt got past its verification to the store."""
    try:
        return (await client.post(path, content=raw, headers=headers)).status_code
    except ReachedTheStore:
        return "verified"


def webhooks(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], pool: Callable[[], object] = no_database
) -> httpx.AsyncClient:
    for name, value in ({"OUTBOUND_PROVIDER_KIND": "sandbox"} | env).items():
        monkeypatch.setenv(name, value)
    app = FastAPI()
    for router in webhook_routers(load_settings(), Metrics(), pool):  # type: ignore[arg-type]
        app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_the_path_prefix_and_body_limit_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"OUTBOUND_WEBHOOK_PATH_PREFIX": "/hooks", "OUTBOUND_WEBHOOK_MAX_BODY_BYTES": "2048"}
    async with webhooks(monkeypatch, env) as client:
        assert (await client.post("/webhooks/whatsapp", content=b"{}")).status_code == 404  # not the default
        assert (await client.post("/hooks/whatsapp", content=b"{}" + b" " * 1000)).status_code == 403  # unsigned
        assert (await client.post("/hooks/whatsapp", content=b"{}" + b" " * 3000)).status_code == 413
    monkeypatch.delenv("OUTBOUND_WEBHOOK_MAX_BODY_BYTES")
    async with webhooks(monkeypatch, {}) as client:  # the default limit is 5 MB
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
    async with webhooks(monkeypatch, env) as client:
        ours = await client.get("/webhooks/whatsapp", params=handshake(token))
        theirs = await client.get("/webhooks/whatsapp", params=handshake(whatsapp_sandbox.VERIFY_TOKEN))
    assert (ours.status_code, ours.text) == (200, "1158201444")
    assert theirs.status_code == 403


def secret_from(tmp_path: Path, name: str, value: str, from_file: bool) -> dict[str, str]:
    if not from_file:
        return {name: value}
    (tmp_path / name).write_text(value + "\n")
    return {f"{name}_FILE": str(tmp_path / name)}


@pytest.mark.parametrize("from_file", [False, True])
async def test_whatsapp_receipts_are_verified_with_the_app_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, from_file: bool
) -> None:
    raw = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    ours, sandboxes = "app-secret-of-this-install", whatsapp_sandbox.APP_SECRET
    env = secret_from(tmp_path, "WHATSAPP_APP_SECRET", ours, from_file)
    async with webhooks(monkeypatch, env, store_reached) as client:
        for secret, expected in ((ours, "verified"), (sandboxes, 403)):
            headers = {"content-type": "application/json", "x-hub-signature-256": whatsapp_webhook.sign(secret, raw)}
            assert await status(client, "/webhooks/whatsapp", raw, headers) == expected


@pytest.mark.parametrize("from_file", [False, True])
async def test_sendgrid_events_are_verified_with_the_public_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, from_file: bool
) -> None:
    ours = ec.generate_private_key(ec.SECP256R1())
    env = secret_from(tmp_path, "SENDGRID_WEBHOOK_PUBLIC_KEY", sendgrid_webhook.public_key_b64(ours), from_file)
    raw, stamp = b"[]", str(int(time.time()))
    async with webhooks(monkeypatch, env, store_reached) as client:
        for key, expected in ((ours, "verified"), (sendgrid_sandbox.signing_key(), 403)):
            headers = {
                "content-type": "application/json",
                "x-twilio-email-event-webhook-signature": sendgrid_webhook.sign(key, raw, stamp),
                "x-twilio-email-event-webhook-timestamp": stamp,
            }
            assert await status(client, "/webhooks/sendgrid/events", raw, headers) == expected
