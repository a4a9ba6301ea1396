"""TCP relays that let pods reach services listening on the host's loopback.

The test plane's PostgreSQL, Redis and kube-apiserver listen on 127.0.0.1 only, and a pod's
127.0.0.1 is its own. A :class:`Relay` listens on an address the pods reach (the pod bridge's
gateway address, ``node.HOST_ADDRESS``) and copies bytes both ways to the loopback service. It runs
an asyncio loop in one thread of the test process, so it needs no program of its own and stops with
``stop()``: the listener closes, open connections are cut, the thread ends.

The service sees every connection coming from 127.0.0.1 (so the embedded PostgreSQL's ``trust``
rule for loopback still applies); a real cluster's services would see the pods' own addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future


class Relay:
    """Forward ``listen_host:<port>`` to ``target_host:target_port`` until :meth:`stop`."""

    def __init__(self, listen_host: str, target_port: int, *, target_host: str = "127.0.0.1", port: int = 0) -> None:
        self.listen_host, self.target_host, self.target_port = listen_host, target_host, target_port
        self._wanted_port = port
        self.port = 0
        self.connections = 0  # accepted so far (tests show traffic went through)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"relay-{target_port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    def start(self) -> Relay:
        self._thread.start()
        future: Future[asyncio.Server] = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            self._server = future.result(timeout=10)
        except BaseException:
            self.stop()
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, self.listen_host, self._wanted_port, reuse_address=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._streams.add(client_writer)
        try:
            target_reader, target_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._streams.discard(client_writer)
            client_writer.close()
            return
        self._streams.add(target_writer)
        await asyncio.gather(
            _pipe(client_reader, target_writer), _pipe(target_reader, client_writer), return_exceptions=True
        )
        for writer in (client_writer, target_writer):
            self._streams.discard(writer)
            writer.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._streams):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    def stop(self) -> None:
        """Close the listener and every open connection, and end the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    def running(self) -> bool:
        """Still listening, or its thread still alive (after ``stop()``: neither)."""
        return self._thread.is_alive() or (self._server is not None and self._server.is_serving())


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side (a TCP FIN, as the peer sent)."""
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
