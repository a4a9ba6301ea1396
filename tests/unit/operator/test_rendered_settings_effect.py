"""Operator settings that only travel to the workers take effect there: the worker environment the
operator renders for a Twilio ChannelProvider (its ConfigMap) is the environment the worker's Twilio
client is built from (app.build_providers on load_settings(), as `outbound worker` builds it); only
the credentials, mounted files in a pod, are given as plain variables here."""

from __future__ import annotations

import asyncio
import os

import pytest

from outbound_operator.reconcile.spec import ChannelProviderSpec
from outbound_operator.reconcile.workload import workload
from outbound_operator.settings import OperatorSettings
from outbound_sender.app import build_providers
from outbound_sender.config import load_settings
from outbound_sender.domain import Channel
from outbound_sender.errors import AmbiguousSendError
from outbound_sender.providers.base import Provider
from tests.unit.providers.test_accounts_from_environment import (
    PREFIXES,
    SID,
    gives_up_connecting_within,
    message,
    never_accepting,
    recording,
    send,
    silent,
)


def rendered_worker(monkeypatch: pytest.MonkeyPatch, endpoint: str, **operator: object) -> Provider:
    settings = OperatorSettings(database_url="postgresql://x", **operator)  # type: ignore[arg-type]
    spec = ChannelProviderSpec.of(
        {"channel": "SMS", "provider": "twilio", "credentialsSecretRef": {"name": "twilio"}, "endpoint": endpoint}
    )
    for name in [n for n in os.environ if n.startswith(PREFIXES)]:
        monkeypatch.delenv(name)
    for name, value in workload("sms", spec, settings, 1).config_map["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")
    monkeypatch.setenv("TWILIO_FROM_NUMBER", "+15550001111")
    [provider] = build_providers(load_settings())
    return provider


async def test_the_workers_ask_for_receipts_at_the_operators_public_webhook_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recording() as server:
        public = "https://messaging.example.com/webhooks"
        worker = rendered_worker(monkeypatch, server.url, worker_webhook_public_url=public)
        await send(worker, message(Channel.SMS, body="hi"))
    [request] = server.requests
    assert request.form()["StatusCallback"].startswith(public + "/")


async def test_the_workers_give_up_on_a_silent_provider_at_the_operators_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with silent() as url:
        worker = rendered_worker(monkeypatch, url, provider_read_timeout_seconds=0.3)  # the default is 20 s
        with pytest.raises(AmbiguousSendError):
            await asyncio.wait_for(worker.send(message(Channel.SMS, body="hi")), 10)
        await worker.aclose()


async def test_the_workers_give_up_connecting_at_the_operators_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    with never_accepting() as url:
        worker = rendered_worker(monkeypatch, url, provider_connect_timeout_seconds=0.3)
        await gives_up_connecting_within(worker, 4)  # the default is 5 s
