"""The provider transport tells 'never sent' from 'sent, no answer' (the ambiguous case)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata

import httpx
import pytest

from outbound_sender.domain import Channel, OutboundMessage
from outbound_sender.embedded import free_port
from outbound_sender.errors import ProviderError
from outbound_sender.providers.transport import provider_client, user_agent
from outbound_sender.providers.whatsapp import WhatsAppProvider
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1/messages"


async def _drop_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(10)
    writer.close()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"id":"x"}\n')
    await writer.drain()


@pytest.fixture
async def dropping() -> AsyncIterator[str]:
    async for url in _serve(_drop_after_request):
        yield url


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    async for url in _serve(_never_answer):
        yield url


@pytest.fixture
async def answering() -> AsyncIterator[str]:
    async for url in _serve(_answer):
        yield url


def client() -> httpx.AsyncClient:
    return provider_client(10, connect_timeout=0.5, read_timeout=0.5)


async def test_a_normal_answer_comes_through(answering: str) -> None:
    async with client() as http:
        response = await http.post(answering, json={"to": "x"})
    assert (response.status_code, response.json()) == (201, {"id": "x"})


async def test_nobody_listening_is_a_connect_error() -> None:
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{free_port()}/v1/messages", json={})


async def test_connection_dropped_after_sending_is_ambiguous(dropping: str) -> None:
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(dropping, json={"to": "x"})


async def test_no_answer_in_time_is_a_read_timeout(silent: str) -> None:
    async with client() as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(silent, json={"to": "x"})


# The User-Agent rule of Meta's published WhatsApp Cloud API description: name/x.y.z, optionally
# ";key=value" and one more product token.
META_USER_AGENT = re.compile(
    r"^[a-zA-Z0-9\-_]+\/[0-9]+\.[0-9]+\.[0-9]+(;[a-zA-Z0-9\-=\.]+)?(\s+[a-zA-Z0-9\-_]+\/[0-9\-\.]+)?$"
)


async def test_whatsapp_requests_carry_a_user_agent_metas_description_accepts() -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        await _answer(reader, writer)

    settings = whatsapp_sandbox.account("http://placeholder")
    async for url in _serve(record):
        settings = settings.model_copy(update={"base_url": url.removesuffix("/v1/messages")})
        provider = WhatsAppProvider(client(), settings)
        message = OutboundMessage(1, "org", Channel.WHATSAPP, "+14155552671", "lease", 1, 0, 5, body="hi")
        with contextlib.suppress(ProviderError):
            await provider.send(message)
        await provider.aclose()
    [head] = heads
    agent = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"user-agent:")
    )
    assert META_USER_AGENT.match(agent), agent
    assert agent == "outbound-messaging/" + ".".join(
        (metadata.version("outbound-messaging").split(".") + ["0"] * 3)[:3]
    )


@pytest.mark.parametrize(
    ("version", "agent"),
    [("0.1", "0.1.0"), ("0.1.0", "0.1.0"), ("1.2.3.dev4+local", "1.2.3"), ("2.0rc1", "2.0.0"), ("x", "0.0.0")],
)
def test_the_user_agent_version_has_exactly_three_numbers(version: str, agent: str) -> None:
    assert user_agent(version) == f"outbound-messaging/{agent}"
    assert META_USER_AGENT.match(user_agent(version))
