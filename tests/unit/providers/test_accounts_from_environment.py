"""Each provider account's settings, read from the environment as `outbound worker` reads them,
reach the requests its client sends: app.build_providers on load_settings(), in sandbox mode (the
sandbox accounts, with every variable set explicitly winning), each client pointed by its *_BASE_URL
at a local server that records what it gets and answers 500."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from outbound_sender.app import build_providers
from outbound_sender.config import load_settings
from outbound_sender.domain import Channel, OutboundMessage
from outbound_sender.errors import AmbiguousSendError, TemporaryError
from outbound_sender.providers import vonage
from outbound_sender.providers.base import Provider
from outbound_sender.sandboxes import ses as ses_sandbox
from outbound_sender.sandboxes.base import Request as SandboxRequest

PREFIXES = ("OUTBOUND_", "TWILIO_", "SENDGRID_", "WHATSAPP_", "VONAGE_", "SES_")
SID = "AC" + "0123456789abcdef" * 2


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Recorder:
    url: str = ""
    requests: list[Request] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Request(method, path, headers, body))
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n")
        writer.write(b"content-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()


@asynccontextmanager
async def recording() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    recorder.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield recorder
    finally:
        server.close()
        await server.wait_closed()


def provider(monkeypatch: pytest.MonkeyPatch, name: str, kind: str = "sandbox", **env: str) -> Provider:
    for variable in [n for n in os.environ if n.startswith(PREFIXES)]:
        monkeypatch.delenv(variable)
    for variable, value in ({"OUTBOUND_PROVIDER_KIND": kind, "OUTBOUND_PROVIDERS_ENABLED": name} | env).items():
        monkeypatch.setenv(variable, value)
    [built] = build_providers(load_settings())
    return built


async def send(client: Provider, message: OutboundMessage) -> None:
    with suppress(Exception):  # the recorder answers 500: what was sent is the point
        await client.send(message)
    await client.aclose()


def message(channel: Channel, **fields: object) -> OutboundMessage:
    to = {Channel.SMS: "+15550001234", Channel.EMAIL: "ada@example.com", Channel.WHATSAPP: "+15550001234"}
    return OutboundMessage(1, "org1", channel, to[channel], "lease", 1, 1, 5, **fields)  # type: ignore[arg-type]


def written(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    return str(path)


async def test_twilio_sends_to_its_base_url_as_its_account_with_or_without_status_callbacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recording() as server:
        for callback in ("true", "false"):
            env = {
                "TWILIO_BASE_URL": server.url,
                "TWILIO_ACCOUNT_SID": SID,
                "TWILIO_AUTH_TOKEN": "token-from-the-environment",
                "TWILIO_STATUS_CALLBACK": callback,
            }
            await send(provider(monkeypatch, "twilio", **env), message(Channel.SMS, body="hi"))
    with_callback, without = server.requests
    assert with_callback.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    credentials = base64.b64decode(with_callback.headers["authorization"].removeprefix("Basic ")).decode()
    assert credentials == f"{SID}:token-from-the-environment"
    assert "StatusCallback" in with_callback.form()
    assert "StatusCallback" not in without.form()


async def test_sendgrid_sends_to_its_base_url_with_its_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async with recording() as server:
        env = {"SENDGRID_BASE_URL": server.url, "SENDGRID_API_KEY": "SG.key-from-the-environment"}
        await send(provider(monkeypatch, "sendgrid", **env), message(Channel.EMAIL, body="hi", subject="s"))
    [request] = server.requests
    assert request.path == "/v3/mail/send"
    assert request.headers["authorization"] == "Bearer SG.key-from-the-environment"


async def test_whatsapp_sends_to_its_base_url_with_its_token_and_default_language(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with recording() as server:
        env = {
            "WHATSAPP_BASE_URL": server.url,
            "WHATSAPP_ACCESS_TOKEN": "token-from-the-environment",
            "WHATSAPP_DEFAULT_LANGUAGE": "pt_BR",
        }
        await send(provider(monkeypatch, "whatsapp", **env), message(Channel.WHATSAPP, template_code="welcome"))
    [request] = server.requests
    assert request.path.endswith("/messages")
    assert request.headers["authorization"] == "Bearer token-from-the-environment"
    assert json.loads(request.body)["template"]["language"]["code"] == "pt_BR"


async def test_vonage_sends_to_its_base_url_as_the_account_its_files_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with recording() as server:
        env = {
            "VONAGE_BASE_URL": server.url,
            "VONAGE_API_KEY_FILE": written(tmp_path, "api-key", "a1b2c3d4"),
            "VONAGE_API_SECRET_FILE": written(tmp_path, "api-secret", "secret-from-a-file"),
            "VONAGE_FROM_NUMBER": "15550009999",
        }
        # live: the sandbox account would add its own signature secret
        await send(provider(monkeypatch, "vonage", "live", **env), message(Channel.SMS, body="hi"))
        signed = env | {"VONAGE_SIGNATURE_SECRET_FILE": written(tmp_path, "signature", "signing-secret-from-a-file")}
        await send(provider(monkeypatch, "vonage", "live", **signed), message(Channel.SMS, body="hi"))
    plain, with_signature = (request.form() for request in server.requests)
    assert (plain["api_key"], plain["api_secret"]) == ("a1b2c3d4", "secret-from-a-file")
    assert with_signature["api_key"] == "a1b2c3d4"
    unsigned = {k: v for k, v in with_signature.items() if k != "sig"}
    assert with_signature["sig"] == vonage.signature("signing-secret-from-a-file", unsigned, "md5hash")
    assert "api_secret" not in with_signature


async def test_ses_sends_to_its_base_url_signed_with_the_keys_its_files_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with recording() as server:
        env = {
            "SES_BASE_URL": server.url,
            "SES_ACCESS_KEY_ID_FILE": written(tmp_path, "access-key-id", "AKIAFROMAFILE0000001"),
            "SES_SECRET_ACCESS_KEY_FILE": written(tmp_path, "secret-access-key", "secret-from-a-file"),
            "SES_SESSION_TOKEN_FILE": written(tmp_path, "session-token", "session-from-a-file"),
        }
        await send(provider(monkeypatch, "ses", **env), message(Channel.EMAIL, body="hi", subject="s"))
    [request] = server.requests
    assert request.path == "/v2/email/outbound-emails"
    assert "Credential=AKIAFROMAFILE0000001/" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == "session-from-a-file"
    # The SES sandbox's verifier accepts the signature for the keys of the files, and only for them.
    path, _, query = request.path.partition("?")
    received = SandboxRequest(request.method, path, query, request.headers, request.body)
    keys = {"access_key_id": "AKIAFROMAFILE0000001", "session_token": "session-from-a-file"}
    assert (
        ses_sandbox.verify_sigv4(received, ses_sandbox.SesConfig(secret_access_key="secret-from-a-file", **keys))
        is None
    )
    assert ses_sandbox.verify_sigv4(received, ses_sandbox.SesConfig(secret_access_key="another-secret", **keys))


async def test_the_status_callback_url_is_under_the_public_webhook_url(monkeypatch: pytest.MonkeyPatch) -> None:
    async with recording() as server:
        env = {"TWILIO_BASE_URL": server.url, "OUTBOUND_WEBHOOK_PUBLIC_URL": "https://hooks.example.com/base"}
        await send(provider(monkeypatch, "twilio", **env), message(Channel.SMS, body="hi"))
    [request] = server.requests
    assert request.form()["StatusCallback"].startswith("https://hooks.example.com/base/")


@asynccontextmanager
async def silent() -> AsyncIterator[str]:
    """A server that reads requests and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_send_without_answer_ends_at_the_read_timeout_and_waits_the_ambiguous_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with silent() as url:
        env = {
            "TWILIO_BASE_URL": url,
            "OUTBOUND_PROVIDER_READ_TIMEOUT_SECONDS": "0.3",  # the default, 20 s, outlasts the deadline below
            "OUTBOUND_PROVIDERS_AMBIGUOUS_RETRY_SECONDS": "123",
        }
        client = provider(monkeypatch, "twilio", **env)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AmbiguousSendError) as raised:
            await asyncio.wait_for(client.send(message(Channel.SMS, body="hi")), 10)
        elapsed = loop.time() - started
        await client.aclose()
    assert 0.3 <= elapsed < 10
    assert raised.value.retry_after == 123


@contextmanager
def never_accepting() -> Iterator[str]:
    """A port whose connections are never accepted: once its backlog is full, connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    waiting = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            waiting.append(filler)
        yield f"http://127.0.0.1:{port}"
    finally:
        for each in [*waiting, listener]:
            each.close()


async def gives_up_connecting_within(client: Provider, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TemporaryError, match="connection failed before sending"):
        await asyncio.wait_for(client.send(message(Channel.SMS, body="hi")), seconds)
    assert loop.time() - started < seconds
    await client.aclose()


async def test_a_connection_that_is_never_accepted_ends_at_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    with never_accepting() as url:
        env = {"TWILIO_BASE_URL": url, "OUTBOUND_PROVIDER_CONNECT_TIMEOUT_SECONDS": "0.3"}
        await gives_up_connecting_within(provider(monkeypatch, "twilio", **env), 4)  # the default is 5 s
