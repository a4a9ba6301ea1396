"""Building the worker's units on a gateway, for the unit tests (tests/fake_gateway.py) and the same
scenarios on PostgreSQL (tests/integration/test_worker_units.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from outbound_sender.metrics import Metrics
from outbound_sender.quota.policy import PolicyBook
from outbound_sender.store.gateway import WorkerGateway
from outbound_sender.worker.channels import ChannelChoice
from outbound_sender.worker.claimer import Claimer
from outbound_sender.worker.completer import Completer
from outbound_sender.worker.control import RuntimeControl
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.follower import ControlFollower
from outbound_sender.worker.gates import Gates
from outbound_sender.worker.loops import Signals
from outbound_sender.worker.rescuer import Rescuer
from outbound_sender.worker.sender import Sender
from outbound_sender.worker.settings import ChannelSwitches, WorkerSettings
from tests.workers import FAST_RETRY, ScriptedProvider, worker_settings


@dataclass
class Units:
    gateway: WorkerGateway
    settings: WorkerSettings
    provider: ScriptedProvider
    metrics: Metrics
    signals: Signals
    control: RuntimeControl
    dispatcher: Dispatcher
    choice: ChannelChoice
    completer: Completer
    sender: Sender
    claimer: Claimer
    rescuer: Rescuer
    follower: ControlFollower
    policies: PolicyBook


def build(
    gateway: WorkerGateway, provider: ScriptedProvider | None = None, gates: Gates | None = None, **overrides: Any
) -> Units:
    settings = worker_settings(**overrides)
    provider = provider or ScriptedProvider()
    metrics, signals, policies = Metrics(), Signals(), PolicyBook()
    dispatcher = Dispatcher([provider], metrics=metrics)
    control = RuntimeControl(dispatcher.provider_names)
    choice = ChannelChoice(settings, ChannelSwitches(), control, dispatcher)
    completer = Completer(gateway, signals, metrics, settings.id)
    sender = Sender(
        dispatcher, completer.record, settings.max_in_flight, FAST_RETRY, metrics=metrics, channel_gates=gates
    )
    claimer = Claimer(gateway, sender, choice, signals=signals, settings=settings, metrics=metrics)
    rescuer = Rescuer(gateway, signals, metrics, settings.recovery_interval_ms / 1000)
    follower = ControlFollower(
        gateway, signals, control=control, dispatcher=dispatcher, policies=policies, interval_seconds=0.05
    )
    return Units(
        gateway, settings, provider, metrics, signals, control, dispatcher, choice, completer, sender, claimer,
        rescuer, follower, policies,
    )  # fmt: skip


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll `condition` until it holds (TimeoutError after `timeout`)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
