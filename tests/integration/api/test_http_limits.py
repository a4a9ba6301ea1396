"""The API's HTTP server under hostile clients, with raw sockets: an oversized head is refused early
and costs no memory, a half-sent request is closed by the deadline, and the connection cap answers 503.

Before the guards, a 100 MiB header grew the process by about 185 MB, 50 of 50 half-sent requests were
still open after 20 s, and any number of connections was served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from urllib.parse import urlsplit

import httpx

from tests.integration.api.conftest import Api, api_settings, serving

MIB = 1024 * 1024
HEADER_BYTES = 100 * MIB


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _connect(api: Api) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(api.url)
    return await asyncio.open_connection(url.hostname, url.port)


def _status_and_body(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def _send_huge_header(api: Api) -> tuple[int, bytes]:
    """Stream a 100 MiB header value while reading; returns (bytes sent, what the server answered)."""
    reader, writer = await _connect(api)
    sent = 0
    answer = asyncio.create_task(reader.read())

    async def stream() -> None:
        nonlocal sent
        chunk = b"a" * MIB
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Padding: ")
        while sent < HEADER_BYTES and not answer.done():
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
        writer.write(b"\r\n\r\n")
        await writer.drain()

    with contextlib.suppress(ConnectionError):
        await stream()
    try:
        async with asyncio.timeout(60):
            raw = await answer
    except ConnectionError:
        raw = b""
    writer.close()
    return sent, raw


async def test_an_oversized_header_is_refused_early_and_memory_does_not_grow(db_dsn: str) -> None:
    async with serving(db_dsn, api_settings(max_header_bytes=64 * 1024)) as api:
        before = rss_bytes()
        sent, raw = await _send_huge_header(api)
        grown = rss_bytes() - before
        assert sent < 32 * MIB, f"the server read {sent} bytes of headers before refusing"
        assert grown < 32 * MIB, f"the process grew by {grown / MIB:.0f} MiB"
        if raw:  # the answer may be lost to the reset of a connection with unread data
            status, body = _status_and_body(raw)
            assert status == 431
            assert json.loads(body)["error"]["code"] == "headers_too_large"
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:  # still serving
            assert (await client.get("/healthz")).status_code == 200


async def test_a_head_over_the_limit_gets_431_with_the_api_error_body(db_dsn: str) -> None:
    async with serving(db_dsn, api_settings(max_header_bytes=4096)) as api:
        reader, writer = await _connect(api)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Padding: " + b"b" * 5000 + b"\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(30):
            raw = await reader.read()
        writer.close()
        status, body = _status_and_body(raw)
        assert status == 431
        assert json.loads(body)["error"]["code"] == "headers_too_large"
        reader, writer = await _connect(api)  # a head under the limit passes
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Padding: " + b"b" * 3000 + b"\r\nConnection: close\r\n\r\n"
        )
        async with asyncio.timeout(30):
            assert _status_and_body(await reader.read())[0] == 200
        writer.close()


HALF_SENT = {
    "nothing": b"",
    "half a head": b"POST /v1/messages HTTP/1.1\r\nHost: api\r\nContent-Type: appl",
    "half a body": b'POST /v1/messages HTTP/1.1\r\nHost: api\r\nContent-Length: 100\r\n\r\n{"channel": ',
}


async def test_half_sent_requests_are_closed_by_the_deadline(db_dsn: str) -> None:
    timeout = 2.0
    async with serving(db_dsn, api_settings(request_timeout_seconds=timeout)) as api:
        kinds = [kind for kind in HALF_SENT for _ in range(17)][:50]
        connections = [await _connect(api) for _ in kinds]
        started = time.monotonic()
        for (_, writer), kind in zip(connections, kinds, strict=True):
            writer.write(HALF_SENT[kind])
            await writer.drain()

        async def answer(reader: asyncio.StreamReader) -> bytes:
            try:
                return await reader.read()  # until the server closes
            except ConnectionError:
                return b""

        async with asyncio.timeout(60):
            answers = await asyncio.gather(*(answer(reader) for reader, _ in connections))
        elapsed = time.monotonic() - started
        for _, writer in connections:
            writer.close()
        assert elapsed >= timeout * 0.9, "closed before the deadline"
        for kind, raw in zip(kinds, answers, strict=True):
            if kind != "half a body":  # the app already had the request: a plain close
                status, body = _status_and_body(raw)
                assert status == 408, kind
                assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_the_connection_cap_answers_503_and_frees_with_the_connections(db_dsn: str) -> None:
    cap = 5
    async with serving(db_dsn, api_settings(max_connections=cap, request_timeout_seconds=120)) as api:
        idle = [await _connect(api) for _ in range(cap)]
        reader, writer = await _connect(api)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        async with asyncio.timeout(30):
            raw = await reader.read()  # the server closes after the 503
        writer.close()
        status, body = _status_and_body(raw)
        assert status == 503
        assert b"retry-after: 1" in raw.lower()
        assert json.loads(body)["error"]["code"] == "server_busy"
        idle.pop()[1].close()
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            while (response := await client.get("/healthz", headers={"Connection": "close"})).status_code == 503:
                assert time.monotonic() < deadline, "a freed connection slot was never reused"
                await asyncio.sleep(0.1)
        assert response.status_code == 200
        for _, idle_writer in idle:
            idle_writer.close()
