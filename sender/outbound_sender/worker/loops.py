"""What the worker's long-lived units share: the events between them, waiting, backoff, supervision.

Rule of every unit's loop: a transient database error (`store.db.is_transient`: refused, reset,
57P01/57P03, protocol state, a pool whose connections died) is retried with backoff; any other
error ends the loop, and `supervise` then stops the whole worker (WorkerFailed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

from outbound_sender.store.db import is_transient

log = logging.getLogger("OutboundJobWorker")
MAX_BACKOFF_SECONDS = 2.0  # database retries: 0.1 s doubling to this


class WorkerFailed(RuntimeError):
    """A long-lived task of the worker ended on an error it cannot survive: the process must exit."""


def _set() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass
class Signals:
    """The events the units exchange (one set per worker)."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)  # work may be due: claim now
    backlog: asyncio.Event = field(default_factory=asyncio.Event)  # the last claim was full: the helper claims too
    control_changed: asyncio.Event = field(default_factory=asyncio.Event)  # re-read provider_control
    recording: asyncio.Event = field(default_factory=_set)  # set while results can be written
    next_retry: float = float("inf")  # monotonic time of the earliest retry this worker scheduled


class Backoff:
    """0.1 s doubling to MAX_BACKOFF_SECONDS; `reset` after a success."""

    def __init__(self, first: float = 0.1, limit: float = MAX_BACKOFF_SECONDS) -> None:
        self.first, self.limit, self.delay = first, limit, first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.limit)
        return delay

    def reset(self) -> None:
        self.delay = self.first


async def first(*aws: Awaitable[object]) -> None:
    """Wait until the first of several awaitables completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def wait_any(seconds: float, *events: asyncio.Event) -> None:
    """Until one of `events` is set, for at most `seconds`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(first(*(event.wait() for event in events)), seconds)


async def tolerating(what: str, action: Awaitable[object]) -> bool:
    """Run `action`; a transient database error is logged (False), any other error propagates."""
    try:
        await action
    except Exception as error:
        if not is_transient(error):
            raise
        log.error(f"OutboundJobWorker {what} failed", extra={"fields": {"error": repr(error)}})
        return False
    return True


async def supervise(claimer: asyncio.Task[None], others: list[asyncio.Task[None]], stop: asyncio.Event) -> str | None:
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


async def finish(task: asyncio.Task[None], grace: float = 5.0) -> None:
    """Let a task see `stop` and end, else cancel it (its error, if any, was reported by supervise)."""
    await asyncio.wait([task], timeout=grace)
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task
