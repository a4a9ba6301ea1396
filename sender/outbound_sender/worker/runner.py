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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import asyncpg

from outbound_sender.config import ChannelSwitches, WorkerSettings
from outbound_sender.domain import Channel, ErrorCode, OutboundMessage, Status
from outbound_sender.errors import ProviderError, TemporaryError
from outbound_sender.logs import message_fields
from outbound_sender.metrics import Metrics
from outbound_sender.quota.gate import Decision, Held, Rerouted, WhatsAppGate
from outbound_sender.quota.ledger import QuotaLedger
from outbound_sender.quota.policy import PolicyBook, QuotaPolicy
from outbound_sender.quota.ratelimit import WhatsAppRateLimiter
from outbound_sender.store.db import connect, create_pool
from outbound_sender.store.queries import sql
from outbound_sender.worker import results
from outbound_sender.worker.control import ProviderControl, RuntimeControl
from outbound_sender.worker.dispatch import CircuitOpenError, Dispatcher
from outbound_sender.worker.results import CallResult
from outbound_sender.worker.retry import RetryPolicy

log = logging.getLogger("OutboundJobWorker")
NOTIFY_CHANNEL = "outbound_message_ready"
CONTROL_CHANNEL = "outbound_control"
APPLICATION = "outbound-worker"  # application_name of the worker's connections (pg_stat_activity)
COMPLETE_BATCH_MAX = 500
RECOVERY_BATCH = 500


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
    )


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
        self.control = RuntimeControl(dispatcher.provider_names)
        self._control_changed = asyncio.Event()
        self._next_retry = float("inf")  # monotonic time of the earliest retry this worker scheduled
        self.claimed_total = 0
        self.completed_total = 0

    # ---- lifecycle -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then drain: finish in-flight sends and record them."""
        self._pool = await create_pool(self.dsn, min_size=2, max_size=2, application=APPLICATION)
        self.gate = self._whatsapp_gate(self._pool)
        self.dispatcher.bind_pool(self._pool)
        try:
            await self._listen()
            await self._refresh_control()
            completer = asyncio.create_task(self._complete_loop(), name="completer")
            recovery = asyncio.create_task(self._recovery_loop(stop), name="recovery")
            controller = asyncio.create_task(self._control_loop(stop), name="control")
            log.info("OutboundJobWorker started", extra={"fields": self._describe()})
            await self._claim_loop(stop)
            await self._drain()
            self._completions.put_nowait(None)
            await completer
            for task in (recovery, controller):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await self._close()
        log.info("OutboundJobWorker stopped", extra={"fields": {"completed": self.completed_total}})

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

    async def _listen(self) -> None:
        try:
            self._listener = await connect(self.dsn, application=APPLICATION)
            await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            await self._listener.add_listener(CONTROL_CHANNEL, self._on_control)
        except (OSError, asyncpg.PostgresError) as error:
            self._listener = None
            log.warning("LISTEN unavailable, polling only", extra={"fields": {"error": repr(error)}})

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if payload in {c.value for c in self.active_channels()}:
            self._wake.set()

    def _on_control(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._control_changed.set()

    def active_channels(self) -> frozenset[Channel]:
        wanted = frozenset(self.settings.channels) & self.switches.enabled()
        if self.channel_gate is not None:
            wanted &= frozenset(self.channel_gate())
        return self.control.allowed_channels(wanted)

    # ---- runtime control -------------------------------------------------------------------
    async def _control_loop(self, stop: asyncio.Event) -> None:
        """Re-read provider_control every control interval, and at once on NOTIFY outbound_control."""
        interval = self.settings.control_interval_ms / 1000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self._control_changed.wait(), stop.wait()), interval)
            self._control_changed.clear()
            try:
                await self._refresh_control()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.error("OutboundJobWorker control refresh failed", extra={"fields": {"error": repr(error)}})

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
        channel), else OUTBOUND_WORKER_BATCH_SIZE."""
        controlled = [c for c in channels if self.control.controlled(c)]
        if not controlled:
            return self.settings.batch_size if channels else 0
        now = time.monotonic()
        return max(self.control.claim_size(c, self.settings.batch_size, now) for c in controlled)

    # ---- claiming --------------------------------------------------------------------------
    async def _claim_loop(self, stop: asyncio.Event) -> None:
        poll = self.settings.poll_interval_ms / 1000
        while not stop.is_set():
            await self._wait_capacity(stop)
            if stop.is_set():
                return
            got, wanted = await self._claim_once(self.settings.max_in_flight - len(self._in_flight))
            if got < wanted or wanted == 0:
                await self._sleep(stop, self._until_next_retry(poll))

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
        try:
            rows = await self._pool.fetch(
                sql("claim_batch"),
                [c.value for c in channels],
                want,
                self.settings.id,
                self.settings.lease_seconds,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.error("OutboundJobWorker claim failed", extra={"fields": {"error": repr(error)}})
            return 0, want
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
        started = time.monotonic()
        provider: str | None = None
        decision: Decision | None = None
        try:
            decision = await self._admit(message)
            if isinstance(decision, Held | Rerouted):
                await self._hold_or_reroute(message, decision)
                return
            chosen = self.dispatcher.provider_for(message)
            provider = chosen.name
            result = await chosen.send(message)
            outcome = results.success(message, provider, result, _ms(started))
        except ProviderError as error:
            hold = await self._after_failure(message, decision, error)
            defer = hold is not None or isinstance(error, CircuitOpenError)  # wait, burn no attempt
            outcome = results.failure(message, provider, error, _ms(started), self.retry, defer=defer)
        except asyncio.CancelledError:
            self._completions.put_nowait(results.interrupted(message, provider, _ms(started)))
            raise
        except Exception as error:  # a bug in a provider must not lose the message
            log.exception("OutboundJobWorker unexpected send error", extra={"fields": {"messageId": message.id}})
            temporary = TemporaryError(ErrorCode.TEMPORARY_ERROR, f"unexpected: {error!r}")
            outcome = results.failure(message, provider, temporary, _ms(started), self.retry)
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
        """Write results; on database trouble retry, keeping them (the lease fences duplicates)."""
        assert self._pool is not None
        delay = 0.1
        while True:
            try:
                rows = await self._pool.fetch(sql("complete_batch"), *results.as_arrays(batch), self.settings.id)
                break
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
                log.error("OutboundJobWorker cannot record results", extra={"fields": {"error": repr(error)}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.completed_total += len(rows)
        for row in rows:
            self._observe_completion(row)

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
            try:
                await self.recover_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.error("OutboundJobWorker recovery failed", extra={"fields": {"error": repr(error)}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

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


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
