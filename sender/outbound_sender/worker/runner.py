"""OutboundJobWorker: claim due messages, send them concurrently, record every attempt.

    claim loop ──claim_batch (FOR UPDATE SKIP LOCKED, lease)──▶ send tasks (≤ max_in_flight)
         ▲ NOTIFY outbound_message_ready / poll                        │ CallResult
         │                                                             ▼
    recovery loop (expired leases)                       completer ──complete_batch──▶ PostgreSQL

No transaction is open during a provider call: the claim commits before the first send, and each
result is written afterwards, fenced by the lease it was claimed under. Results are written in
batches (whatever accumulated while the previous write ran), so the database sees few statements
at high throughput and no delay at low throughput. The worker uses 3 connections: a listener and
a pool of two (claims and housekeeping; completions).

Supervision: the long-lived tasks (claim loop, completer, recovery, control, listener) retry every
transient database error (`store.db.is_transient`: refused, reset, 57P01/57P03, protocol state, a
pool whose connections died) with backoff. Any other error, or a task that ends early, stops the
worker: it drains (in-flight sends finish and are recorded if the database lets us) and `run`
raises WorkerFailed, so `outbound worker` exits non-zero and Kubernetes restarts it. The claim loop
claims only while results can be written: a failed flush pauses claiming until a flush succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import asyncpg

from outbound_sender import tracing
from outbound_sender.domain import Channel, ErrorCode, OutboundMessage, Status
from outbound_sender.errors import ProviderError, TemporaryError
from outbound_sender.logs import mask, message_fields
from outbound_sender.metrics import Metrics
from outbound_sender.quota.gate import Decision, Held, Rerouted, WhatsAppGate
from outbound_sender.quota.ledger import QuotaLedger
from outbound_sender.quota.policy import PolicyBook, QuotaPolicy
from outbound_sender.quota.ratelimit import WhatsAppRateLimiter
from outbound_sender.store.db import connect, create_pool, is_transient
from outbound_sender.store.queries import sql
from outbound_sender.worker import results
from outbound_sender.worker.control import ProviderControl, RuntimeControl
from outbound_sender.worker.dispatch import CircuitOpenError, Dispatcher
from outbound_sender.worker.results import CallResult
from outbound_sender.worker.retry import RetryPolicy
from outbound_sender.worker.settings import ChannelSwitches, WorkerSettings

log = logging.getLogger("OutboundJobWorker")
NOTIFY_CHANNEL = "outbound_message_ready"
CONTROL_CHANNEL = "outbound_control"
APPLICATION = "outbound-worker"  # application_name of the worker's connections (pg_stat_activity)
COMPLETE_BATCH_MAX = 500
RECOVERY_BATCH = 500
LISTENER_CHECK_SECONDS = 5.0  # how often the LISTEN connection is checked (besides its termination callback)
MAX_BACKOFF_SECONDS = 2.0  # database retries: 0.1 s doubling to this


class WorkerFailed(RuntimeError):
    """A long-lived task of the worker ended on an error it cannot survive: the process must exit."""


def message_from_row(row: asyncpg.Record) -> OutboundMessage:
    return OutboundMessage(
        id=row["id"],
        org_id=row["org_id"],
        channel=Channel(row["channel"]),
        to_recipient=row["to_recipient"],
        lease_id=row["lease_id"],
        attempt_no=row["claim_count"],
        attempt_count=row["attempt_count"],
        max_attempts=row["max_attempts"],
        body=row["body"],
        subject=row["subject"],
        template_code=row["template_code"],
        template_language=row["template_language"],
        template_params=row["template_params"] or {},
        dossier_id=row["dossier_id"],
        correlation_id=row["correlation_id"],
        priority=row["priority"],
        created_at=row["created_at"],
        traceparent=row["traceparent"],
    )


def _span_attributes(message: OutboundMessage) -> dict[str, str | int]:
    """The send span's attributes: the message by id, never its recipient (docs/tracing.md)."""
    attributes: dict[str, str | int] = {
        "outbound.message.id": message.id,
        "outbound.channel": message.channel.value,
        "outbound.org_id": message.org_id,
        "outbound.attempt": message.attempt_no,
    }
    if message.correlation_id:
        attributes["outbound.correlation_id"] = mask(message.correlation_id)  # the client's text
    return attributes


def _trace_outcome(span: tracing.SpanHandle, r: CallResult) -> None:
    span.set("outbound.outcome", "RELEASED" if r.release else r.outcome.value)
    span.set("outbound.error_code", r.error_code)
    span.set("http.response.status_code", r.http_status)
    if r.error_code is not None and not r.release:
        span.failed(r.error_code)


class OutboundJobWorker:
    def __init__(
        self,
        dsn: str,
        dispatcher: Dispatcher,
        *,
        settings: WorkerSettings,
        switches: ChannelSwitches | None = None,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        channel_gate: Callable[[], Iterable[Channel]] | None = None,
        redis_url: str | None = None,
        whatsapp_number: str = "default",
        policies: PolicyBook | None = None,
    ) -> None:
        self.dsn = dsn
        self.dispatcher = dispatcher
        self.settings = settings
        self.switches = switches or ChannelSwitches()
        self.retry = retry or RetryPolicy()
        self.metrics = metrics or Metrics()
        self.channel_gate = channel_gate
        self.redis_url = redis_url
        self.whatsapp_number = whatsapp_number
        self.policies = policies or PolicyBook()
        self.gate: WhatsAppGate | None = None
        self._wake = asyncio.Event()
        self._capacity = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._completions: asyncio.Queue[CallResult | None] = asyncio.Queue()
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listener_lost = asyncio.Event()
        self._recording = asyncio.Event()  # set while results can be written (the last flush worked)
        self._recording.set()
        self.control = RuntimeControl(dispatcher.provider_names)
        self._control_changed = asyncio.Event()
        self._next_retry = float("inf")  # monotonic time of the earliest retry this worker scheduled
        self.claimed_total = 0
        self.completed_total = 0

    # ---- lifecycle -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then drain: finish in-flight sends and record them.

        If a long-lived task ends on its own (an error it cannot survive), `stop` is set for the
        whole process, the worker drains, and WorkerFailed is raised."""
        self._pool = await create_pool(self.dsn, min_size=2, max_size=2, application=APPLICATION)
        self.gate = self._whatsapp_gate(self._pool)
        self.dispatcher.bind_pool(self._pool)
        failure: str | None = None
        try:
            await self._listen()
            await self._refresh_control()
            completer = asyncio.create_task(self._complete_loop(), name="completer")
            housekeeping = [
                asyncio.create_task(self._recovery_loop(stop), name="recovery"),
                asyncio.create_task(self._control_loop(stop), name="control"),
                asyncio.create_task(self._listen_loop(stop), name="listener"),
            ]
            claimer = asyncio.create_task(self._claim_loop(stop), name="claimer")
            log.info("OutboundJobWorker started", extra={"fields": self._describe()})
            failure = await _supervise(claimer, [completer, *housekeeping], stop)
            await _finish(claimer)
            await self._drain()
            if not completer.done():
                self._completions.put_nowait(None)
                await completer
            for task in housekeeping:
                await _finish(task)
        finally:
            await self._close()
        log.info("OutboundJobWorker stopped", extra={"fields": {"completed": self.completed_total}})
        if failure is not None:
            raise WorkerFailed(failure)

    def _describe(self) -> dict[str, object]:
        return {
            "workerId": self.settings.id,
            "batchSize": self.settings.batch_size,
            "maxInFlight": self.settings.max_in_flight,
            "channels": ",".join(sorted(c.value for c in self.active_channels())) or "none",
        }

    def _whatsapp_gate(self, pool: asyncpg.Pool) -> WhatsAppGate:
        client = None
        if self.redis_url:
            import redis.asyncio as aioredis

            client = aioredis.from_url(self.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
        limiter = WhatsAppRateLimiter(client, gauge=self.metrics.ratelimit_fallback)
        return WhatsAppGate(QuotaLedger(pool), limiter, self.policies, self.whatsapp_number)

    async def _close(self) -> None:
        await self.dispatcher.aclose()  # the providers' HTTP connections
        if self.gate is not None and self.gate.limiter.client is not None:
            await self.gate.limiter.client.aclose()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=5)
        if self._pool is not None:
            await self._pool.close()

    async def _listen(self) -> bool:
        """Open the LISTEN connection; False (polling only, retried by the listener task) on failure."""
        listener: asyncpg.Connection | None = None
        try:
            listener = await connect(self.dsn, application=APPLICATION, timeout=10)
            self._listener_lost.clear()
            listener.add_termination_listener(lambda _conn: self._listener_lost.set())
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            await listener.add_listener(CONTROL_CHANNEL, self._on_control)
        except Exception as error:
            if not is_transient(error):
                raise
            if listener is not None:
                listener.terminate()
            log.warning("LISTEN unavailable, polling only", extra={"fields": {"error": repr(error)}})
            return False
        self._listener = listener
        return True

    async def _listen_loop(self, stop: asyncio.Event) -> None:
        """Keep the LISTEN connection: re-open it (with backoff) when the database restarted or the
        connection died, then wake the claim loop and re-read control (work may have arrived)."""
        delay = 0.1
        while not stop.is_set():
            if self._listener is None:
                if not await self._listen():
                    await _wait(stop, delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                    continue
                delay = 0.1
                log.info("OutboundJobWorker LISTEN re-established")
                await _tolerating("pool reconnect", self._reopen_pool())
                self._wake.set()
                self._control_changed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self._listener_lost.wait(), stop.wait()), LISTENER_CHECK_SECONDS)
            if stop.is_set():
                return
            if not self._listener_lost.is_set() and await self._listener_alive():
                continue
            log.warning("OutboundJobWorker LISTEN connection lost; reconnecting")
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.terminate()

    async def _reopen_pool(self) -> None:
        """After a restart the pool reconnects lazily, one connection per concurrent use: open
        both now, so the worker is back to its three connections and the first claim and write
        do not pay for the connect."""
        assert self._pool is not None
        async with asyncio.timeout(10), self._pool.acquire(), self._pool.acquire():
            pass

    async def _listener_alive(self) -> bool:
        assert self._listener is not None
        if self._listener.is_closed():
            return False
        try:
            await self._listener.execute("SELECT 1", timeout=5)
        except Exception as error:
            if not is_transient(error):
                raise
            return False
        return True

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if payload in {c.value for c in self.active_channels()}:
            self._wake.set()

    def _on_control(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._control_changed.set()

    def active_channels(self) -> frozenset[Channel]:
        """The channels to claim now: configured, switched on, allowed by runtime control, and not
        ones whose every provider has its circuit open in this worker."""
        wanted = frozenset(self.settings.channels) & self.switches.enabled()
        if self.channel_gate is not None:
            wanted &= frozenset(self.channel_gate())
        return frozenset(c for c in self.control.allowed_channels(wanted) if self.dispatcher.claimable(c) != 0)

    # ---- runtime control -------------------------------------------------------------------
    async def _control_loop(self, stop: asyncio.Event) -> None:
        """Re-read provider_control every control interval, and at once on NOTIFY outbound_control."""
        interval = self.settings.control_interval_ms / 1000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self._control_changed.wait(), stop.wait()), interval)
            self._control_changed.clear()
            await _tolerating("control refresh", self._refresh_control())

    async def _refresh_control(self) -> None:
        assert self._pool is not None
        rows = [ProviderControl.from_row(dict(row)) for row in await self._pool.fetch(sql("control_rows"))]
        self.control.update(rows)
        self.dispatcher.apply_control({row.provider: row for row in rows})
        policies = await self._pool.fetch(sql("quota_policies"))
        self.policies.update(QuotaPolicy.from_row(dict(row)) for row in policies)
        self._wake.set()  # a channel may have just opened

    def _claim_size(self, channels: frozenset[Channel]) -> int:
        """The batch: the control row's for controlled channels (an operator-run worker serves one
        channel), else OUTBOUND_WORKER_BATCH_SIZE; no more than the probes of a half-open circuit."""
        controlled = [c for c in channels if self.control.controlled(c)]
        if not controlled:
            size = self.settings.batch_size if channels else 0
        else:
            now = time.monotonic()
            size = max(self.control.claim_size(c, self.settings.batch_size, now) for c in controlled)
        limits = [limit for c in channels if (limit := self.dispatcher.claimable(c)) is not None]
        return min([size, *limits])

    # ---- claiming --------------------------------------------------------------------------
    async def _claim_loop(self, stop: asyncio.Event) -> None:
        poll = self.settings.poll_interval_ms / 1000
        delay = 0.1
        while not stop.is_set():
            await self._wait_capacity(stop)
            await self._wait_recording(stop)
            if stop.is_set():
                return
            try:
                got, wanted = await self._claim_once(self.settings.max_in_flight - len(self._in_flight))
            except Exception as error:
                if not is_transient(error):
                    raise
                log.error("OutboundJobWorker claim failed", extra={"fields": {"error": repr(error)}})
                await self._sleep(stop, min(poll, delay))
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            delay = 0.1
            if got < wanted or wanted == 0:
                await self._sleep(stop, self._until_next_retry(poll))

    async def _wait_recording(self, stop: asyncio.Event) -> None:
        """Never claim while results cannot be written: a claimed message whose result cannot be
        recorded is sent again once its lease expires."""
        if not self._recording.is_set():
            log.warning("OutboundJobWorker not claiming: results cannot be recorded")
            await _first(self._recording.wait(), stop.wait())

    def _until_next_retry(self, poll: float) -> float:
        """Sleep no longer than the poll interval, and wake when a retry we scheduled is due."""
        now = time.monotonic()
        if self._next_retry <= now:
            self._next_retry = float("inf")
        return max(0.0, min(poll, self._next_retry - now))

    async def _claim_once(self, free: int) -> tuple[int, int]:
        """Claim up to a batch (the control row's batch size when controlled); (claimed, wanted)."""
        channels = self.active_channels()
        want = min(free, self._claim_size(channels))
        if not channels or want <= 0:
            return 0, 0
        assert self._pool is not None
        self._wake.clear()
        rows = await self._pool.fetch(
            sql("claim_batch"),
            [c.value for c in channels],
            want,
            self.settings.id,
            self.settings.lease_seconds,
        )
        self.metrics.heartbeat.set_to_current_time()
        if rows:
            log.info(f"OutboundJobWorker Processing {len(rows)} pending outbound messages")
            for row in rows:
                self._start_send(message_from_row(row))
        return len(rows), want

    def _start_send(self, message: OutboundMessage) -> None:
        self.claimed_total += 1
        self.metrics.claimed.labels(message.channel.value).inc()
        task = asyncio.create_task(self._send(message))
        self._in_flight.add(task)
        self.metrics.in_flight.set(len(self._in_flight))
        task.add_done_callback(self._send_done)

    def _send_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self.metrics.in_flight.set(len(self._in_flight))
        self._capacity.set()

    async def _wait_capacity(self, stop: asyncio.Event) -> None:
        need = min(self.settings.batch_size, self.settings.max_in_flight)
        while self.settings.max_in_flight - len(self._in_flight) < need and not stop.is_set():
            self._capacity.clear()
            await _first(self._capacity.wait(), stop.wait())

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(self._wake.wait(), stop.wait()), seconds)

    # ---- sending ---------------------------------------------------------------------------
    async def _send(self, message: OutboundMessage) -> None:
        with tracing.send_span(message.traceparent, lambda: _span_attributes(message)) as span:
            await self._send_traced(message, span)

    async def _send_traced(self, message: OutboundMessage, span: tracing.SpanHandle) -> None:
        started = time.monotonic()
        provider: str | None = None
        decision: Decision | None = None
        try:
            decision = await self._admit(message)
            if isinstance(decision, Held | Rerouted):
                span.set("outbound.outcome", "HELD" if isinstance(decision, Held) else "REROUTED")
                await self._hold_or_reroute(message, decision)
                return
            chosen = self.dispatcher.provider_for(message)
            provider = chosen.name
            span.set("outbound.provider", provider)
            tracing.call_attributes(**{"outbound.provider": provider})
            result = await chosen.send(message)
            outcome = results.success(message, provider, result, _ms(started))
        except CircuitOpenError as error:  # our own state: another worker may send it now
            outcome = results.released(message, error.message)
        except ProviderError as error:
            hold = await self._after_failure(message, decision, error)
            defer = hold is not None  # wait, burn no attempt
            outcome = results.failure(message, provider, error, _ms(started), self.retry, defer=defer)
        except asyncio.CancelledError:
            self._completions.put_nowait(results.interrupted(message, provider, _ms(started)))
            raise
        except Exception as error:  # a bug in a provider must not lose the message
            log.exception("OutboundJobWorker unexpected send error", extra={"fields": {"messageId": message.id}})
            temporary = TemporaryError(ErrorCode.TEMPORARY_ERROR, f"unexpected: {error!r}")
            outcome = results.failure(message, provider, temporary, _ms(started), self.retry)
        _trace_outcome(span, outcome)
        self._observe_call(outcome)
        self._completions.put_nowait(outcome)

    # ---- WhatsApp quota and limits (quota/gate.py) -------------------------------------------
    async def _admit(self, message: OutboundMessage) -> Decision | None:
        if message.channel is not Channel.WHATSAPP or self.gate is None:
            return None
        return await self.gate.admit(message)

    async def _after_failure(
        self, message: OutboundMessage, decision: Decision | None, error: ProviderError
    ) -> float | None:
        if self.gate is None or message.channel is not Channel.WHATSAPP:
            return None
        try:
            return await self.gate.after_failure(message, decision, error)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as db_error:
            log.error("OutboundJobWorker quota bookkeeping failed", extra={"fields": {"error": repr(db_error)}})
            return None

    async def _hold_or_reroute(self, message: OutboundMessage, decision: Held | Rerouted) -> None:
        fields = message_fields(message.id, message.correlation_id, decision=decision.note)
        log.info("OutboundJobWorker WhatsApp quota decision", extra={"fields": fields})
        if isinstance(decision, Held):
            self.metrics.deferred.labels(message.channel.value, decision.code.value).inc()
            self._completions.put_nowait(results.deferred(message, decision.seconds, decision.code, decision.note))
            return
        assert self._pool is not None
        await self._pool.execute(
            sql("reroute_message"),
            message.id,
            message.lease_id,
            decision.channel.value,
            decision.note,
            self.settings.id,
        )
        self.metrics.rerouted.labels(message.channel.value, decision.channel.value).inc()

    def _observe_call(self, r: CallResult) -> None:
        channel = r.message.channel.value
        if r.release:  # no provider call was made: a deferral, not a failed send
            self.metrics.deferred.labels(channel, r.error_code or "UNKNOWN").inc()
            return
        provider = r.provider or "none"
        self.metrics.provider_duration.labels(provider, channel, r.outcome.value).observe(r.duration_ms / 1000)
        if r.ambiguous:
            self.metrics.ambiguous.labels(channel, provider).inc()
        if r.error_code is None:
            self.metrics.send_success.labels(channel, provider).inc()
            self._log_sent(r, provider)
            return
        self.metrics.send_failure.labels(channel, provider, r.error_code).inc()
        final = r.retry_delay_ms is None or r.message.attempt_count >= r.message.max_attempts
        level = logging.ERROR if final else logging.WARNING
        fields = message_fields(
            r.message.id,
            r.message.correlation_id,
            errorCode=r.error_code,
            provider=provider,
            channel=channel,
            attempt=f"{r.message.attempt_count}/{r.message.max_attempts}",
            retryInMs=r.retry_delay_ms,
            providerCode=r.provider_code,
        )
        log.log(level, f"handleFailure: {r.error_message}", extra={"fields": fields})

    def _log_sent(self, r: CallResult, provider: str) -> None:
        """One line per accepted message: `grep messageId=<id>` finds its correlation id and provider."""
        fields = message_fields(
            r.message.id,
            r.message.correlation_id,
            provider=provider,
            channel=r.message.channel.value,
            providerMessageId=r.provider_message_id,
            durationMs=r.duration_ms,
        )
        log.info("OutboundJobWorker sent", extra={"fields": fields})

    async def _drain(self) -> None:
        """SIGTERM: no new claims; give in-flight sends the grace period, then interrupt them."""
        if not self._in_flight:
            return
        log.info(f"OutboundJobWorker draining {len(self._in_flight)} in-flight sends")
        _done, pending = await asyncio.wait(set(self._in_flight), timeout=self.settings.shutdown_grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # ---- recording -------------------------------------------------------------------------
    async def _complete_loop(self) -> None:
        while True:
            first = await self._completions.get()
            batch = [] if first is None else [first]
            while not self._completions.empty() and len(batch) < COMPLETE_BATCH_MAX:
                item = self._completions.get_nowait()
                if item is None:
                    first = None
                    break
                batch.append(item)
            if batch:
                await self._flush(batch)
            if first is None:
                return

    async def _flush(self, batch: list[CallResult]) -> None:
        """Write results; on database trouble retry, keeping them (the lease fences duplicates).
        While a write fails, the claim loop does not claim (`_recording`)."""
        released = [r for r in batch if r.release]
        recorded = [r for r in batch if not r.release]
        handed_back = len(released)
        delay = 0.1
        while True:
            try:
                rows = await self._write(recorded, released)
                break
            except Exception as error:
                if not is_transient(error):
                    raise
                self._recording.clear()
                log.error("OutboundJobWorker cannot record results", extra={"fields": {"error": repr(error)}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        self._recording.set()
        self.completed_total += len(rows) + handed_back
        for row in rows:
            self._observe_completion(row)

    async def _write(self, recorded: list[CallResult], released: list[CallResult]) -> list[asyncpg.Record]:
        assert self._pool is not None
        if released:
            ids = [r.message.id for r in released]
            await self._pool.execute(sql("release_leases"), ids, [r.message.lease_id for r in released])
            released.clear()  # handed back: a retry after a later failure must not release again
        if not recorded:
            return []
        rows: list[asyncpg.Record] = await self._pool.fetch(
            sql("complete_batch"), *results.as_arrays(recorded), self.settings.id
        )
        return rows

    def _observe_completion(self, row: asyncpg.Record) -> None:
        channel = row["channel"]
        if not row["applied"]:
            self.metrics.superseded.labels(channel, row["outcome"]).inc()
            return
        status = row["status"]
        if status == Status.SENT:
            self.metrics.latency.labels(channel).observe(max(row["latency_seconds"], 0.0))
        elif status == Status.FAILED:
            self.metrics.dead_lettered.labels(channel, row["error_code"] or "UNKNOWN").inc()
        elif row["outcome"] == "RETRY":
            self.metrics.retries.labels(channel, row["error_code"] or "UNKNOWN").inc()
        if status == Status.QUEUED and row["retry_in_seconds"] is not None:
            due = time.monotonic() + max(row["retry_in_seconds"], 0.0) + 0.01
            self._next_retry = min(self._next_retry, due)

    # ---- recovery --------------------------------------------------------------------------
    async def _recovery_loop(self, stop: asyncio.Event) -> None:
        interval = self.settings.recovery_interval_ms / 1000
        while not stop.is_set():
            if self._recording.is_set():  # our own results first: they still hold their leases
                await _tolerating("recovery", self.recover_once())
            await _wait(stop, interval)

    async def recover_once(self) -> int:
        assert self._pool is not None
        total = 0
        while True:
            rows = await self._pool.fetch(sql("recover_expired_leases"), RECOVERY_BATCH)
            for row in rows:
                self.metrics.recovered.labels(row["channel"], row["status"]).inc()
                fields = {"messageId": row["id"], "leaseOwner": row["lease_owner"], "status": row["status"]}
                log.warning("OutboundJobWorker recovered expired lease", extra={"fields": fields})
            total += len(rows)
            if len(rows) < RECOVERY_BATCH:
                return total


async def _first(*aws: object) -> None:
    """Wait until the first of several awaitables completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _tolerating(what: str, action: Awaitable[object]) -> bool:
    """Run `action`; a transient database error is logged (False), any other error propagates."""
    try:
        await action
    except Exception as error:
        if not is_transient(error):
            raise
        log.error(f"OutboundJobWorker {what} failed", extra={"fields": {"error": repr(error)}})
        return False
    return True


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _supervise(claimer: asyncio.Task[None], others: list[asyncio.Task[None]], stop: asyncio.Event) -> str | None:
    """Wait until the claim loop ends because `stop` was set. A task that fails, or ends while
    `stop` is not set, is a failure: log it, stop the process, and say what happened."""
    pending: set[asyncio.Task[None]] = {claimer, *others}
    while claimer in pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is None and stop.is_set():
                continue
            failure = f"worker task {task.get_name()!r} ended: {error!r}"
            log.critical("OutboundJobWorker " + failure, exc_info=error)
            stop.set()
            return failure
    return None


async def _finish(task: asyncio.Task[None], grace: float = 5.0) -> None:
    """Let a task see `stop` and end, else cancel it (its error, if any, was reported by _supervise)."""
    await asyncio.wait([task], timeout=grace)
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
