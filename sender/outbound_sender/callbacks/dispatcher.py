"""The callback dispatcher: the outbox in PostgreSQL -> signed POSTs to the clients' endpoints.

A long-lived loop (`outbound callbacks`, also inside `outbound run`) that claims due outbox rows
for a lease, POSTs each one concurrently and records the answer: a 2xx delivers it; anything else
(an error status, a redirect, a timeout, a refused address) schedules it again after an exponential
backoff, until OUTBOUND_CALLBACKS_MAX_ATTEMPTS, then FAILED. A dispatcher that dies holding rows
leaves them due again when the lease ends: delivery is at least once, and the receiver
de-duplicates by the Outbound-Event-Id header.

Errors: a receiver's failure belongs to its row. A database outage or restart (store.db.is_transient)
is logged and waited out, the loop keeps going. Anything else is a bug: `run` raises it and the
command exits non-zero (the pod is restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import asyncpg
import httpx

from outbound_sender.callbacks import signing
from outbound_sender.callbacks.settings import CallbackSettings
from outbound_sender.callbacks.targets import RefusedTarget, Resolver, Target, check, system_resolver
from outbound_sender.metrics import Metrics
from outbound_sender.store import callbacks as outbox
from outbound_sender.store.db import create_pool, is_transient

log = logging.getLogger("outbound_sender.callbacks")
CONCURRENCY = 50  # POSTs in flight per dispatcher
LEASE_MARGIN_SECONDS = 30.0  # a claimed row stays ours this long beyond the request timeout
MAX_ERROR_TEXT = 500
MAX_OUTAGE_WAIT = 30.0


class Outcome:
    """One attempt's result, as recorded."""

    __slots__ = ("error", "http_status", "reason")

    def __init__(self, http_status: int | None, reason: str | None = None, error: str | None = None) -> None:
        self.http_status = http_status
        self.reason = reason  # None: delivered; else http, network or refused_address
        self.error = error


class CallbackDispatcher:
    def __init__(
        self,
        dsn: str,
        settings: CallbackSettings,
        metrics: Metrics,
        *,
        resolver: Resolver = system_resolver,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dsn = dsn
        self.settings = settings
        self.metrics = metrics
        self.resolver = resolver
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._crash: BaseException | None = None
        self._next_refresh = 0.0  # monotonic time of the next outbox-gauge query (once per poll interval)
        self._user_agent = f"outbound-callbacks/{version('outbound-messaging')}"

    @property
    def lease_seconds(self) -> float:
        return self.settings.timeout_seconds + LEASE_MARGIN_SECONDS

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; in-flight POSTs get the request timeout to finish, the rest are left to
        their lease. Raises on anything that is not a database outage."""
        outage = 0
        pool: asyncpg.Pool | None = None
        timeout = httpx.Timeout(self.settings.timeout_seconds)
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            try:
                while not stop.is_set():
                    self._raise_crash()
                    try:
                        if pool is None:
                            pool = await create_pool(self.dsn, max_size=3, application="outbound-callbacks")
                        claimed = await self._claim(pool, client)
                        if time.monotonic() >= self._next_refresh:
                            await self._refresh_gauges(pool)
                            self._next_refresh = time.monotonic() + self.settings.poll_interval_ms / 1000
                        outage = 0
                    except Exception as error:
                        if not is_transient(error):
                            raise
                        outage += 1
                        log.error("callback dispatcher: database unavailable", extra={"fields": {"error": repr(error)}})
                        await _wait(stop, min(MAX_OUTAGE_WAIT, 0.5 * 2**outage))
                        continue
                    if claimed == 0:
                        await _wait(stop, self.settings.poll_interval_ms / 1000)
                    elif len(self._tasks) >= CONCURRENCY:
                        await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                self._raise_crash()
            finally:
                await self._drain()
                if pool is not None:
                    await pool.close()

    def _raise_crash(self) -> None:
        if self._crash is not None:
            raise RuntimeError("callback delivery task failed") from self._crash

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.settings.timeout_seconds + 1)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _claim(self, pool: asyncpg.Pool, client: httpx.AsyncClient) -> int:
        free = CONCURRENCY - len(self._tasks)
        if free <= 0:
            return 0
        rows = await outbox.claim(pool, free, self.lease_seconds)
        for row in rows:
            task = asyncio.create_task(self._deliver(pool, client, row), name=f"callback-{row['id']}")
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return len(rows)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._crash is None:
            self._crash = task.exception()

    async def _refresh_gauges(self, pool: asyncpg.Pool) -> None:
        row = await outbox.outbox_stats(pool)
        self.metrics.callback_outbox_depth.set(row["depth"])
        self.metrics.callback_outbox_age.set(row["oldest_age_seconds"])

    async def _deliver(self, pool: asyncpg.Pool, client: httpx.AsyncClient, row: asyncpg.Record) -> None:
        outcome = await self.post(client, row)
        try:
            await self._record(pool, row, outcome)
        except Exception as error:
            if not is_transient(error):
                raise
            # Not recorded: the row comes back when its lease ends and is sent again (at least once).
            log.error("callback result not recorded", extra={"fields": {"callback": row["id"], "error": repr(error)}})

    async def post(self, client: httpx.AsyncClient, row: asyncpg.Record) -> Outcome:
        body = encode_body(row)
        active = [row["secret"], *([row["previous_secret"]] if row["previous_secret"] else [])]
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            signing.EVENT_ID_HEADER: str(row["id"]),
            signing.EVENT_HEADER: row["event"],
            signing.SIGNATURE_HEADER: signing.signature_header(active, timestamp, body),
        }
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                target = await check(row["url"], allow_private=self.settings.allow_private, resolver=self.resolver)
        except RefusedTarget as error:
            return Outcome(None, "refused_address", f"url {error}")
        except TimeoutError:
            return Outcome(None, "network", "name resolution timed out")
        started = time.monotonic()
        try:
            # The answer's status is all we read: the body is never downloaded.
            response = await client.send(pinned_request(client, target, headers, body), stream=True)
            await response.aclose()
        except (httpx.HTTPError, OSError) as error:
            return Outcome(None, "network", f"{type(error).__name__}: {error}"[:MAX_ERROR_TEXT])
        finally:
            self.metrics.callback_duration.observe(time.monotonic() - started)
        if 200 <= response.status_code < 300:
            return Outcome(response.status_code)
        return Outcome(response.status_code, "http", f"HTTP {response.status_code}")

    async def _record(self, pool: asyncpg.Pool, row: asyncpg.Record, outcome: Outcome) -> None:
        fields: dict[str, Any] = {"callback": row["id"], "message_id": row["outbound_message_id"], "org": row["org_id"]}
        if outcome.reason is None:
            await outbox.delivered(pool, row["id"], outcome.http_status)
            self.metrics.callback_delivered.labels(row["event"]).inc()
            log.info("callback delivered", extra={"fields": fields | {"attempt": row["attempts"]}})
            return
        give_up = row["attempts"] >= self.settings.max_attempts
        delay = self.settings.delay_seconds(row["attempts"], random.random())
        await outbox.retry(pool, row["id"], outcome.http_status, outcome.error, delay_seconds=delay, give_up=give_up)
        fields |= {"attempt": row["attempts"], "error": outcome.error}
        if give_up:
            self.metrics.callback_failed.labels(outcome.reason).inc()
            log.warning("callback failed for good", extra={"fields": fields})
        else:
            self.metrics.callback_retried.labels(outcome.reason).inc()
            log.info("callback will be retried", extra={"fields": fields | {"retry_in_seconds": round(delay, 3)}})


def encode_body(row: asyncpg.Record) -> bytes:
    """The JSON document POSTed (docs/callbacks.md); the same bytes for every attempt."""
    created: dt.datetime = row["created_at"]
    document = {
        "event_id": row["id"],
        "event": row["event"],
        "created_at": created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "message": row["payload"],
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def pinned_request(client: httpx.AsyncClient, target: Target, headers: dict[str, str], body: bytes) -> httpx.Request:
    """A POST to the checked address itself, named by the URL's host in Host and TLS SNI."""
    url = httpx.URL(target.url).copy_with(host=str(target.addresses[0]))
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return client.build_request(
        "POST", url, headers=headers | {"Host": target.host_header}, content=body, extensions=extensions
    )


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
