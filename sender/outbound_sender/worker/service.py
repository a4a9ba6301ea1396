"""OutboundJobWorker: the units of the worker, wired to one store gateway and supervised.

    listener ──wake──▶ claimer ──claim (FOR UPDATE SKIP LOCKED, lease)──▶ sender (≤ max_in_flight)
        │ NOTIFY / poll       ▲ recording                                   │ CallResult
        ▼                     │                                             ▼
    follower (provider_control, policies)    rescuer (expired leases)    completer ──▶ PostgreSQL

Every unit reaches PostgreSQL only through `store.gateway.WorkerGateway`. The worker uses 3
connections: the listener's and a pool of two (claims and housekeeping; completions). Under a
backlog a second claim loop claims on the listener's connection (worker/claimer.py).

Supervision (worker/loops.py): a transient database error is retried by the unit that met it;
any other error, or a unit that ends early, stops the worker: it drains (in-flight sends finish
and are recorded if the database lets us) and `run` raises WorkerFailed, so `outbound worker`
exits non-zero and Kubernetes restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from outbound_sender.domain import Channel
from outbound_sender.metrics import Metrics
from outbound_sender.quota.policy import PolicyBook
from outbound_sender.store.gateway import PgWorkerGateway
from outbound_sender.worker.channels import ChannelChoice
from outbound_sender.worker.claimer import Claimer
from outbound_sender.worker.completer import Completer
from outbound_sender.worker.control import RuntimeControl
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.follower import ControlFollower
from outbound_sender.worker.gates import ChannelGate
from outbound_sender.worker.listener import Listener
from outbound_sender.worker.loops import Signals, WorkerFailed, finish, supervise
from outbound_sender.worker.rescuer import Rescuer
from outbound_sender.worker.retry import RetryPolicy
from outbound_sender.worker.sender import Sender
from outbound_sender.worker.settings import ChannelSwitches, WorkerSettings
from outbound_sender.worker.whatsapp import WhatsAppQuotaGate

log = logging.getLogger("OutboundJobWorker")


class OutboundJobWorker:
    gateway_type: type[PgWorkerGateway] = PgWorkerGateway  # the store every unit uses (bench/pickup.py observes it)

    def __init__(
        self,
        dsn: str,
        dispatcher: Dispatcher,
        *,
        settings: WorkerSettings,
        switches: ChannelSwitches | None = None,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
        redis_url: str | None = None,
        whatsapp_number: str = "default",
    ) -> None:
        self.dsn = dsn
        self.dispatcher = dispatcher
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.metrics = metrics or Metrics()
        self.redis_url = redis_url
        self.whatsapp_number = whatsapp_number
        self.policies = PolicyBook()
        self.control = RuntimeControl(dispatcher.provider_names)
        self.choice = ChannelChoice(settings, switches or ChannelSwitches(), self.control, dispatcher)
        self.signals = Signals()
        self.started = asyncio.Event()  # every unit runs: set once, when "OutboundJobWorker started" is logged
        self.sender: Sender | None = None  # the units that count, once `run` built them
        self.completer: Completer | None = None

    @property
    def claimed_total(self) -> int:
        return 0 if self.sender is None else self.sender.started

    @property
    def completed_total(self) -> int:
        return 0 if self.completer is None else self.completer.completed

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then drain: finish in-flight sends and record them.

        If a unit ends on its own (an error it cannot survive), `stop` is set for the whole
        process, the worker drains, and WorkerFailed is raised."""
        gateway = await self.gateway_type.open(self.dsn)
        self.dispatcher.bind_pool(gateway.pool)
        self.completer = Completer(gateway, self.signals, self.metrics, self.settings.id)
        gates, in_flight, record = self._gates(gateway), self.settings.max_in_flight, self.completer.record
        self.sender = Sender(self.dispatcher, record, in_flight, self.retry, metrics=self.metrics, channel_gates=gates)
        try:
            failure = await self._work(gateway, self.sender, self.completer, stop)
        finally:
            await self.dispatcher.aclose()  # the providers' HTTP connections
            await self.sender.aclose()
            await gateway.close()
        log.info("OutboundJobWorker stopped", extra={"fields": {"completed": self.completed_total}})
        if failure is not None:
            raise WorkerFailed(failure)

    def _gates(self, gateway: PgWorkerGateway) -> dict[Channel, ChannelGate]:
        """The channel gates (worker/gates.py): WhatsApp's quota and rate limits."""
        number, redis, worker, share = self.whatsapp_number, self.redis_url, self.settings.id, self.settings.processes
        whatsapp = WhatsAppQuotaGate.build(
            gateway, self.metrics, self.policies, number=number, redis=redis, worker=worker, processes=share or 1
        )
        return {Channel.WHATSAPP: whatsapp}

    async def _work(
        self, gateway: PgWorkerGateway, sender: Sender, completer: Completer, stop: asyncio.Event
    ) -> str | None:
        s, signals, metrics = self.settings, self.signals, self.metrics
        listener = Listener(gateway, signals, self.choice.wants)
        follower = ControlFollower(
            gateway, signals, control=self.control, dispatcher=self.dispatcher, policies=self.policies,
            interval_seconds=s.control_interval_ms / 1000,
        )  # fmt: skip
        rescuer = Rescuer(gateway, signals, metrics, s.recovery_interval_ms / 1000)
        claimer = partial(Claimer, gateway, sender, self.choice, signals=signals, settings=s, metrics=metrics)
        main, helper = claimer(), claimer(on=lambda: listener.subscription)  # see worker/claimer.py
        try:
            await listener.open()
            await follower.refresh()
            completing = asyncio.create_task(completer.run(), name="completer")
            loops = {"recovery": rescuer.run(stop), "control": follower.run(stop), "listener": listener.run(stop)}
            housekeeping = [asyncio.create_task(loop, name=name) for name, loop in loops.items()]
            claiming = asyncio.create_task(main.run(stop), name="claimer")
            helping = asyncio.create_task(helper.run(stop), name="claim helper")
            log.info("OutboundJobWorker started", extra={"fields": self._describe()})
            self.started.set()
            failure = await supervise(claiming, [helping, completing, *housekeeping], stop)
            for task in (claiming, helping):  # no claim may start a send once the drain began
                await finish(task)
            await sender.drain(s.shutdown_grace_seconds)
            if not completing.done():
                completer.finish()
                await completing
            for task in housekeeping:
                await finish(task)
        finally:
            await listener.close()
        return failure

    def _describe(self) -> dict[str, object]:
        s, channels = self.settings, ",".join(sorted(c.value for c in self.choice.active())) or "none"
        return {"workerId": s.id, "batchSize": s.batch_size, "maxInFlight": s.max_in_flight, "channels": channels}
