"""The image's entry points trust no public secret by default: every process but `outbound run` needs
an explicit OUTBOUND_PROVIDER_KIND, and live mode needs the secret of every webhook it accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from outbound_sender.embedded import free_port
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.webhooks import whatsapp as whatsapp_webhook
from tests.processes import outbound, stop, wait_http

# What the sender image's environment holds when it is started with only DATABASE_URL.
IMAGE_ENV = ("DATABASE_URL", "PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")


def _clean_env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key in IMAGE_ENV}
    env.update({key.upper(): value for key, value in settings.items()})
    return env


def _start(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `outbound COMMAND` to its end (a refusal ends it at once)."""
    argv = [sys.executable, "-m", "outbound_sender.cli", *command]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    "command", [["api"], ["worker"], ["check-provider", "whatsapp"]], ids=["api", "worker", "check-provider"]
)
def test_without_a_provider_kind_the_entry_points_refuse_to_start(db_dsn: str, command: list[str]) -> None:
    done = _start(command, _clean_env(database_url=db_dsn, outbound_http_port=str(free_port())))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "OUTBOUND_PROVIDER_KIND is not set" in done.stderr
    assert "Only `outbound run` defaults to sandbox" in done.stderr


def test_live_api_refuses_to_start_without_the_webhook_secrets_it_needs(db_dsn: str) -> None:
    env = _clean_env(
        database_url=db_dsn,
        outbound_http_port=str(free_port()),
        outbound_provider_kind="live",
        twilio_auth_token="set",
        whatsapp_verify_token="set",
    )
    done = _start(["api"], env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "missing: SENDGRID_WEBHOOK_PUBLIC_KEY, WHATSAPP_APP_SECRET (or their *_FILE)" in done.stderr


def _whatsapp_receipt() -> bytes:
    status = {"id": "wamid.X", "status": "read", "timestamp": "1750000000", "biz_opaque_callback_data": "1"}
    entry = {"id": "W", "changes": [{"field": "messages", "value": {"statuses": [status]}}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


def test_live_api_refuses_the_sandbox_secrets_and_accepts_its_own(db_dsn: str) -> None:
    port = free_port()
    env = _clean_env(
        database_url=db_dsn,
        outbound_http_host="127.0.0.1",
        outbound_http_port=str(port),
        outbound_provider_kind="live",
        outbound_providers_enabled="whatsapp",
        whatsapp_app_secret="our-app-secret",
        whatsapp_verify_token="our-verify-token",
    )
    process = outbound("api", env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/webhooks/whatsapp"
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        raw = _whatsapp_receipt()
        sandbox_signed = {"x-hub-signature-256": whatsapp_webhook.sign(whatsapp_sandbox.APP_SECRET, raw)}
        own_signed = {"x-hub-signature-256": whatsapp_webhook.sign("our-app-secret", raw)}
        headers = {"content-type": "application/json"}
        assert httpx.post(base, content=raw, headers=headers | sandbox_signed).status_code == 403
        assert httpx.post(base, content=raw, headers=headers | own_signed).status_code == 200
        hello = {"hub.mode": "subscribe", "hub.challenge": "42"}
        sandbox_token = httpx.get(base, params=hello | {"hub.verify_token": whatsapp_sandbox.VERIFY_TOKEN})
        assert sandbox_token.status_code == 403
        own_token = httpx.get(base, params=hello | {"hub.verify_token": "our-verify-token"})
        assert (own_token.status_code, own_token.text) == (200, "42")
    finally:
        assert stop(process) == 0
