"""An in-memory WorkerGateway: the worker's units run on it without PostgreSQL.

It keeps the rules of store/sql/worker.sql that the units rely on (leases fence results, DEFER
burns no attempt, a RETRY out of attempts fails, only expired SENDING leases are recovered), so a
unit test says something about the real worker; tests/integration/test_worker_units.py runs the
same scenarios on PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from outbound_sender.domain import CallResult, Channel, OutboundMessage, Outcome, ProviderControl, Status
from outbound_sender.store.gateway import Callback, Completion, Recovered, Subscription


@dataclass
class Row:
    message: OutboundMessage
    status: Status = Status.QUEUED
    due: float = 0.0
    lease_owner: str | None = None
    leased_until: float = 0.0
    error_code: str | None = None
    attempts: list[CallResult] = field(default_factory=list)


class FakeSubscription:
    def __init__(self, on_ready: Callable[[str], None], on_control: Callback, on_lost: Callback) -> None:
        self.on_ready, self.on_control, self.on_lost = on_ready, on_control, on_lost
        self.closed = False

    async def fetch(self, query: str, *args: object) -> list[Any]:
        raise AssertionError("the fake gateway runs no SQL")

    async def alive(self) -> bool:
        return not self.closed

    def terminate(self) -> None:
        self.closed = True

    async def close(self) -> None:
        self.closed = True


class FakeGateway:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rows: dict[int, Row] = {}
        self.control: list[ProviderControl] = []
        self.policies: list[dict[str, Any]] = []
        self.failures: dict[str, list[BaseException]] = {}  # raised by the next calls of a method
        self.calls: Counter[str] = Counter()
        self.batches: list[int] = []  # sizes of the complete() calls
        self.subscriptions: list[FakeSubscription] = []

    def add(self, count: int = 1, channel: Channel = Channel.SMS, max_attempts: int = 5) -> list[int]:
        ids = []
        for _ in range(count):
            n = len(self.rows) + 1
            message = OutboundMessage(n, "org1", channel, f"+1555000{n:04d}", "", 0, 0, max_attempts, body="hi")
            self.rows[n] = Row(message)
            ids.append(n)
        return ids

    def statuses(self) -> dict[str, int]:
        return dict(Counter(row.status.value for row in self.rows.values()))

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        pending = self.failures.get(method)
        if pending:
            raise pending.pop(0)

    async def claim(
        self,
        channels: Collection[Channel],
        limit: int,
        worker_id: str,
        lease_seconds: float,
        on: Subscription | None = None,
    ) -> list[OutboundMessage]:
        self._enter("claim")
        if on is not None:
            assert isinstance(on, FakeSubscription)
            assert not on.closed, "a claim on a closed LISTEN connection"
            self.calls["claim on the LISTEN connection"] += 1
        now = self.clock()
        due = [r for r in self.rows.values() if r.status is Status.QUEUED and r.due <= now]
        claimed = []
        for row in [r for r in due if r.message.channel in channels][:limit]:
            m = row.message
            row.message = replace(m, lease_id=str(uuid.uuid4()), attempt_no=m.attempt_no + 1)
            row.message = replace(row.message, attempt_count=m.attempt_count + 1)
            row.status, row.lease_owner, row.leased_until = Status.SENDING, worker_id, now + lease_seconds
            claimed.append(row.message)
        return claimed

    async def complete(self, results: Sequence[CallResult], worker_id: str) -> list[Completion]:
        self._enter("complete")
        self.batches.append(len(results))
        return [self._complete(r) for r in results]

    def _complete(self, r: CallResult) -> Completion:
        row = self.rows[r.message.id]
        row.attempts.append(r)
        if row.message.lease_id != r.message.lease_id or row.status not in {Status.SENDING, Status.QUEUED}:
            return Completion(r.message.id, r.message.channel.value, r.outcome.value, applied=False)
        m, retry_in = row.message, (r.retry_delay_ms or 0) / 1000
        if r.outcome is Outcome.SENT:
            row.status = Status.SENT
        elif r.outcome is Outcome.DEFER or (r.outcome is Outcome.RETRY and m.attempt_count < m.max_attempts):
            row.status, row.due = Status.QUEUED, self.clock() + retry_in
            if r.outcome is Outcome.DEFER:
                row.message = replace(m, attempt_count=max(m.attempt_count - 1, 0))
        else:
            row.status = Status.FAILED
        row.error_code = None if r.outcome is Outcome.SENT else r.error_code
        queued = row.status is Status.QUEUED
        return Completion(
            m.id, m.channel.value, r.outcome.value, True, row.status.value, row.error_code, 0.0,
            retry_in if queued else None,
        )  # fmt: skip

    async def release(self, results: Sequence[CallResult]) -> None:
        self._enter("release")
        for r in results:
            row = self.rows[r.message.id]
            if row.status is Status.SENDING and row.message.lease_id == r.message.lease_id:
                row.status = Status.QUEUED
                row.message = replace(row.message, attempt_count=max(row.message.attempt_count - 1, 0))

    async def reroute(self, message: OutboundMessage, channel: Channel, note: str, worker_id: str) -> None:
        self._enter("reroute")
        row = self.rows[message.id]
        if row.status is Status.SENDING and row.message.lease_id == message.lease_id:
            row.status, row.message = Status.QUEUED, replace(row.message, channel=channel)

    async def recover_expired(self, limit: int) -> list[Recovered]:
        self._enter("recover_expired")
        now = self.clock()
        expired = [r for r in self.rows.values() if r.status is Status.SENDING and r.leased_until < now][:limit]
        for row in expired:
            out = row.message.attempt_count >= row.message.max_attempts
            row.status, row.error_code = (Status.FAILED if out else Status.QUEUED), "LEASE_EXPIRED"
        return [Recovered(r.message.id, r.message.channel.value, r.status.value, r.lease_owner) for r in expired]

    async def control_rows(self) -> list[ProviderControl]:
        self._enter("control_rows")
        return list(self.control)

    async def quota_policies(self) -> list[dict[str, Any]]:
        self._enter("quota_policies")
        return list(self.policies)

    async def subscribe(
        self, on_ready: Callable[[str], None], on_control: Callback, on_lost: Callback
    ) -> FakeSubscription:
        self._enter("subscribe")
        subscription = FakeSubscription(on_ready, on_control, on_lost)
        self.subscriptions.append(subscription)
        return subscription

    async def warm(self) -> None:
        self._enter("warm")
