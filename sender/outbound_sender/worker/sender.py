"""The sender unit: claimed messages become provider calls, at most `max_in_flight` at a time.

Each call runs in its own task: the channel's gate (worker/gates.py) first, then the provider the
dispatcher chooses; its CallResult goes to `record` (the completer). No transaction is open during
a provider call. On shutdown `drain` gives in-flight calls the grace period, then interrupts them
(recorded as ambiguous retries: the provider may have got them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from outbound_sender import tracing
from outbound_sender.domain import CallResult, ErrorCode, OutboundMessage
from outbound_sender.errors import ProviderError, TemporaryError
from outbound_sender.metrics import Metrics
from outbound_sender.worker import gates, observe, results
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.guarded import CircuitOpenError
from outbound_sender.worker.loops import first
from outbound_sender.worker.retry import RetryPolicy

log = logging.getLogger("OutboundJobWorker")


class Sender:
    def __init__(
        self,
        dispatcher: Dispatcher,
        record: Callable[[CallResult], None],
        max_in_flight: int,
        retry: RetryPolicy,
        *,
        metrics: Metrics,
        channel_gates: gates.Gates | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.record = record
        self.max_in_flight = max_in_flight
        self.retry = retry
        self.metrics = metrics
        self.gates: gates.Gates = channel_gates or {}
        self.in_flight: set[asyncio.Task[None]] = set()
        self._capacity = asyncio.Event()
        self.started = 0
        self.reserved = 0  # slots a claim on its way will fill

    def free(self) -> int:
        return self.max_in_flight - len(self.in_flight) - self.reserved

    @contextlib.contextmanager
    def reserve(self, slots: int) -> Iterator[None]:
        """Hold `slots` free slots while a claim for them is on its way."""
        self.reserved += slots
        try:
            yield
        finally:
            self.reserved -= slots
            self._capacity.set()  # a claim that came back short left room: whoever waits for it must see it

    def start(self, message: OutboundMessage) -> None:
        self.started += 1
        self.metrics.child(self.metrics.claimed, message.channel.value).inc()
        task = asyncio.create_task(self.send(message))
        self.in_flight.add(task)
        self.metrics.in_flight.set(len(self.in_flight))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.metrics.in_flight.set(len(self.in_flight))
        self._capacity.set()

    async def wait_capacity(self, need: int, stop: asyncio.Event) -> None:
        """Until `need` calls could start (or `stop`)."""
        while self.free() < need and not stop.is_set():
            self._capacity.clear()
            await first(self._capacity.wait(), stop.wait())

    async def drain(self, grace: float) -> None:
        """SIGTERM: no new claims; give in-flight sends the grace period, then interrupt them."""
        if not self.in_flight:
            return
        log.info(f"OutboundJobWorker draining {len(self.in_flight)} in-flight sends")
        _done, pending = await asyncio.wait(set(self.in_flight), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def send(self, message: OutboundMessage) -> None:
        with tracing.send_span(message.traceparent, lambda: observe.span_attributes(message)) as span:
            outcome = await self._call(message, span)
            if outcome is None:
                return
            observe.trace_outcome(span, outcome)
            observe.observe_call(self.metrics, outcome)
            self.record(outcome)

    async def _call(self, message: OutboundMessage, span: tracing.SpanHandle) -> CallResult | None:
        """The call's result; None when the gate stopped the message (its result, if any, recorded)."""
        started = time.monotonic()
        provider: str | None = None
        admission = gates.SEND
        try:
            admission = await gates.admit(self.gates, message)
            if admission.stopped is not None:
                span.set("outbound.outcome", admission.stopped)
                if admission.result is not None:
                    self.record(admission.result)
                return None
            chosen = self.dispatcher.provider_for(message)
            provider = chosen.name
            span.set("outbound.provider", provider)
            tracing.call_attributes(**{"outbound.provider": provider})
            return results.success(message, provider, await chosen.send(message), _ms(started))
        except CircuitOpenError as error:  # our own state: another worker may send it now
            return results.released(message, error.message)
        except ProviderError as error:
            defer = await gates.after_failure(self.gates, message, admission, error) is not None
            return results.failure(message, provider, error, _ms(started), self.retry, defer=defer)
        except asyncio.CancelledError:
            self.record(results.interrupted(message, provider, _ms(started)))
            raise
        except Exception as error:  # a bug in a provider must not lose the message
            log.exception("OutboundJobWorker unexpected send error", extra={"fields": {"messageId": message.id}})
            temporary = TemporaryError(ErrorCode.TEMPORARY_ERROR, f"unexpected: {error!r}")
            return results.failure(message, provider, temporary, _ms(started), self.retry)

    async def aclose(self) -> None:
        for gate in self.gates.values():
            await gate.aclose()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
