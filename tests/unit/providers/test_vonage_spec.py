"""The Vonage client and sandbox held to Vonage's published OpenAPI description of the SMS API (test
data beside the checkout, like the runbook; OUTBOUND_VONAGE_SMS_SPEC overrides the path): the
form the client sends, the sandbox's answers and receipts, and the status tables."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest
import yaml

from outbound_sender.domain import Channel, OutboundMessage
from outbound_sender.providers import vonage
from outbound_sender.providers.vonage import SignatureMethod, VonageProvider
from outbound_sender.sandboxes import vonage as vonage_sandbox
from outbound_sender.webhooks import vonage as vonage_webhook

METHODS: list[SignatureMethod] = ["md5hash", "md5", "sha1", "sha256", "sha512"]


def _spec_path() -> Path:
    override = os.environ.get("OUTBOUND_VONAGE_SMS_SPEC")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[4] / "shared" / "provider-specs" / "vonage_sms.yml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    path = _spec_path()
    if not path.exists():
        pytest.skip(f"Vonage's SMS API description is not beside the checkout: {path} (OUTBOUND_VONAGE_SMS_SPEC)")
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def _schema(spec: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["components"]["schemas"][name]
    return schema


def _transport(app: vonage_sandbox.VonageSandbox) -> httpx.ASGITransport:
    """The sandbox in-process (its ASGI signature says dict where httpx says MutableMapping)."""
    return httpx.ASGITransport(app=app)  # type: ignore[arg-type]


def _message(body: str = "hello") -> OutboundMessage:
    return OutboundMessage(42, "org", Channel.SMS, "+15557654321", "lease", 1, 1, 5, body=body)


def _check_field(name: str, value: str, rules: dict[str, Any]) -> None:
    assert rules.get("minLength", 0) <= len(value), (name, value)
    if name != "sig":  # see test_a_sha256_or_sha512_signature_is_longer_than_the_description_allows
        assert len(value) <= rules.get("maxLength", len(value)), (name, value)
    if "pattern" in rules:
        assert re.search(rules["pattern"], value), (name, value)
    if "enum" in rules:
        assert value in rules["enum"], (name, value)


@pytest.mark.parametrize("method", [*METHODS, None])
def test_the_form_is_a_new_message_of_the_description(spec: dict[str, Any], method: SignatureMethod | None) -> None:
    schema = _schema(spec, "NewMessage")
    if method is None:
        settings = vonage_sandbox.account("http://x", signature_secret=None)
    else:
        settings = vonage_sandbox.account("http://x", signature_method=method)
    fields = vonage.form(settings, _message("hello é"), "https://hooks.example.com/webhooks")
    assert set(schema["required"]) <= set(fields)
    # `timestamp` is the signing scheme's (developer.vonage.com, signing messages), not in the schema.
    assert set(fields) - {"timestamp"} <= set(schema["properties"])
    for name, value in fields.items():
        if name in schema["properties"]:
            _check_field(name, value, schema["properties"][name])
    assert (method is None) == ("api_secret" in fields)
    assert (method is None) != ("sig" in fields)


def test_a_sha256_or_sha512_signature_is_longer_than_the_description_allows(spec: dict[str, Any]) -> None:
    """The description caps `sig` at 60 characters, yet a SHA-256 HMAC is 64 hex digits and a SHA-512
    one 128 (its own receipt example carries 64). Vonage's SDKs send them: the sandbox takes them."""
    assert _schema(spec, "NewMessage")["properties"]["sig"]["maxLength"] == 60
    assert len(vonage.signature("s", {"a": "1"}, "sha256")) == 64
    assert len(vonage.signature("s", {"a": "1"}, "sha512")) == 128
    assert len(_schema(spec, "DeliveryReceipt")["properties"]["sig"]["example"]) == 64


@pytest.mark.parametrize("method", METHODS)
async def test_the_sandbox_takes_a_request_signed_with_each_method(method: SignatureMethod) -> None:
    app = vonage_sandbox.VonageSandbox()
    app.config.signature_method = method
    app.config.rules = []
    transport = _transport(app)
    settings = vonage_sandbox.account("http://vonage.test", signature_method=method)
    provider = VonageProvider(httpx.AsyncClient(transport=transport), settings)
    try:
        result = await provider.send(_message())
    finally:
        await provider.aclose()
    assert result.provider_message_id
    assert app.stats["accepted"] == 1


def test_the_status_table_is_the_descriptions_error_list(spec: dict[str, Any]) -> None:
    assert set(vonage.STATUS) == {int(code) for code in spec["x-errors"]}


def _sandbox_answer(app: vonage_sandbox.VonageSandbox, fields: dict[str, str]) -> tuple[int, Any]:
    async def call() -> httpx.Response:
        transport = _transport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vonage.test") as client:
            return await client.post("/sms/json", data=fields)

    response = asyncio.run(call())
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({}, "0"),
        ({"to": "12345"}, "3"),
        ({"type": "morse"}, "3"),
        ({"ttl": "10"}, "3"),
        ({"callback": "not a url"}, "23"),
        ({"api_key": "nobody00"}, "4"),
        ({"text": ""}, "2"),
    ],
)
def test_sandbox_answers_are_sms_or_error_objects_of_the_description(
    spec: dict[str, Any], change: dict[str, str], status: str
) -> None:
    app = vonage_sandbox.VonageSandbox()
    app.config.rules = []
    settings = vonage_sandbox.account("http://x", signature_secret=None)
    fields = {**vonage.form(settings, _message(), "https://hooks.example.com/webhooks"), **change}
    http_status, body = _sandbox_answer(app, fields)
    assert http_status == 200
    schema = _schema(spec, "SMS" if status == "0" else "Error")
    assert set(body) <= set(schema["properties"])
    part_schema = _schema(spec, "Message" if status == "0" else "ErrorMessage")
    for part in body["messages"]:
        assert set(part) <= set(part_schema["properties"])
        assert all(isinstance(value, str) for value in part.values())
    assert body["messages"][0]["status"] == status


def test_sandbox_receipts_are_delivery_receipts_of_the_description(spec: dict[str, Any]) -> None:
    schema = _schema(spec, "DeliveryReceipt")
    statuses = set(schema["properties"]["status"]["x-possible-values"])
    assert set(vonage_webhook.STATUS) | {"unknown"} == statuses
    app = vonage_sandbox.VonageSandbox()
    fields = {"to": "15557654321", "from": "AcmeInc", "client-ref": "42"}
    part = app.part(fields)
    for status, code in (("accepted", "0"), ("delivered", "0"), ("failed", "2")):
        _, raw, headers = app._receipt("http://hooks.test/dlr", fields, part, status, code)
        receipt = orjson.loads(raw) if headers["content-type"] == "application/json" else dict(parse_qsl(raw.decode()))
        assert set(receipt) <= set(schema["properties"])
        assert receipt["status"] in statuses
