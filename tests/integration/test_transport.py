"""The provider transport tells 'never sent' from 'sent, no answer' (the ambiguous case)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from outbound_sender.embedded import free_port
from outbound_sender.providers.transport import provider_client

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
