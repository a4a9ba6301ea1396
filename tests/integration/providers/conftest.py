"""Real HTTP servers on loopback for the provider tests: the three sandboxes and a webhook app
(the webhook router mounted on a small FastAPI app, recording into the test's database)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from outbound_sender.domain import Channel
from outbound_sender.metrics import Metrics
from outbound_sender.providers.base import Provider
from outbound_sender.providers.sendgrid import SendGridProvider, SendGridSettings
from outbound_sender.providers.ses import SesProvider, SesSettings
from outbound_sender.providers.twilio import TwilioProvider, TwilioSettings
from outbound_sender.providers.vonage import VonageProvider, VonageSettings
from outbound_sender.providers.whatsapp import WhatsAppProvider, WhatsAppSettings
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import ses as ses_sandbox
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes import vonage as vonage_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.sandboxes.base import SandboxApp
from outbound_sender.store.db import create_pool
from outbound_sender.webhooks import sendgrid as sendgrid_webhook
from outbound_sender.webhooks import twilio as twilio_webhook
from outbound_sender.webhooks import whatsapp as whatsapp_webhook
from outbound_sender.webhooks.router import WebhookConfig, router


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 (free port) for the block; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def http_client(read_timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(read_timeout, connect=2.0))


@dataclass
class Case:
    """One provider, as the conformance suite drives it."""

    name: str
    channel: Channel
    sandbox: Callable[[], SandboxApp]
    recipient: str
    id_prefix: str
    final_status: str  # delivery_status the webhooks end in

    def provider(
        self, base_url: str, *, read_timeout: float = 5.0, webhooks: str | None = None, ambiguous_retry: float = 0.5
    ) -> Provider:
        client = http_client(read_timeout)
        retry = ambiguous_retry
        if self.name == "twilio":
            settings = twilio_sandbox.account(base_url)
            return TwilioProvider(client, settings, callback_base=webhooks, ambiguous_retry=retry)
        if self.name == "sendgrid":
            return SendGridProvider(client, sendgrid_sandbox.account(base_url), ambiguous_retry=retry)
        if self.name == "ses":
            return SesProvider(client, ses_sandbox.account(base_url), ambiguous_retry=retry)
        if self.name == "vonage":
            account = vonage_sandbox.account(base_url)
            return VonageProvider(client, account, callback_base=webhooks, ambiguous_retry=retry)
        return WhatsAppProvider(client, whatsapp_sandbox.account(base_url), ambiguous_retry=retry)


CASES = [
    Case("twilio", Channel.SMS, twilio_sandbox.TwilioSandbox, "+15557654321", "SM", "DELIVERED"),
    Case("sendgrid", Channel.EMAIL, sendgrid_sandbox.SendGridSandbox, "ann@example.com", "", "DELIVERED"),
    Case("whatsapp", Channel.WHATSAPP, whatsapp_sandbox.WhatsAppSandbox, "+15557654321", "wamid.", "READ"),
    Case("vonage", Channel.SMS, vonage_sandbox.VonageSandbox, "+15557654321", "", "DELIVERED"),
    Case("ses", Channel.EMAIL, ses_sandbox.SesSandbox, "ann@example.com", "0100", "DELIVERED"),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


@dataclass
class Webhooks:
    url: str  # base of the router's prefix, as providers call it
    metrics: Metrics
    pool: asyncpg.Pool


LOOPBACK = "http://127.0.0.1:"


def webhook_config(url: str | None = None) -> WebhookConfig:
    return WebhookConfig(
        accounts={
            "twilio": TwilioSettings(auth_token=twilio_sandbox.AUTH_TOKEN),
            "sendgrid": SendGridSettings(webhook_public_key=sendgrid_sandbox.verification_key()),
            "whatsapp": WhatsAppSettings(
                app_secret=whatsapp_sandbox.APP_SECRET, verify_token=whatsapp_sandbox.VERIFY_TOKEN
            ),
            "vonage": VonageSettings(signature_secret=vonage_sandbox.SIGNATURE_SECRET),
            # the SES sandbox serves its SNS certificate
            "ses": SesSettings(sns_topic_arns=[ses_sandbox.SNS_TOPIC_ARN], sns_certificate_url_prefixes=[LOOPBACK]),
        },
        public_url=url,
    )


@contextlib.asynccontextmanager
async def webhook_server(db_dsn: str, config: WebhookConfig) -> AsyncIterator[Webhooks]:
    """The webhook router with `config`, on a real HTTP server, recording into the test database."""
    pool = await create_pool(db_dsn, min_size=1, max_size=4)
    metrics = Metrics()
    app = FastAPI()
    app.include_router(router(config, pool, metrics=metrics))
    try:
        async with serve(app) as base:
            yield Webhooks(f"{base}/webhooks", metrics, pool)
    finally:
        await pool.close()


@pytest.fixture
async def webhooks(db_dsn: str) -> AsyncIterator[Webhooks]:
    async with webhook_server(db_dsn, webhook_config()) as server:
        yield server


def point_webhooks(app: SandboxApp, url: str) -> None:
    """SendGrid, WhatsApp and SES (its SNS subscription) have account-level webhook URLs; Twilio's
    and Vonage's travel with each message."""
    if isinstance(app, sendgrid_sandbox.SendGridSandbox):
        app.config.event_webhook_url = f"{url}/sendgrid/events"
    if isinstance(app, whatsapp_sandbox.WhatsAppSandbox):
        app.config.webhook_url = f"{url}/whatsapp"
    if isinstance(app, ses_sandbox.SesSandbox):
        app.config.endpoint_url = f"{url}/ses/sns"


def twilio_headers(url: str, params: dict[str, str]) -> dict[str, str]:
    """Form-encoded Twilio status callback headers, signed for `url` with the sandbox token."""
    signature = twilio_webhook.sign(twilio_sandbox.AUTH_TOKEN, url, params.items())
    return {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature}


def sendgrid_headers(raw: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = sendgrid_webhook.sign(sendgrid_sandbox.signing_key(), raw, stamp)
    return {
        "content-type": "application/json",
        "x-twilio-email-event-webhook-signature": signature,
        "x-twilio-email-event-webhook-timestamp": stamp,
    }


def whatsapp_headers(raw: bytes) -> dict[str, str]:
    signature = whatsapp_webhook.sign(whatsapp_sandbox.APP_SECRET, raw)
    return {"content-type": "application/json", "x-hub-signature-256": signature}


async def check_provider(provider: str, *args: str, env: dict[str, str]) -> tuple[int, list[str]]:
    """`outbound check-provider <provider>` as a user runs it (the sandbox keeps serving meanwhile):
    its exit status and printed lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "outbound_sender.cli",
        "check-provider",
        provider,
        *args,
        env={**os.environ, "OUTBOUND_PROVIDER_KIND": "sandbox", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None, err
    return process.returncode, out.decode().splitlines()
