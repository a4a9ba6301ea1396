"""Assembling processes: the worker with its providers, the sandbox server, signal handling."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import uvicorn
from pydantic_settings import BaseSettings

from outbound_sender.config import AllSettings, ProviderKind
from outbound_sender.domain import Channel
from outbound_sender.errors import ConfigError
from outbound_sender.metrics import Metrics
from outbound_sender.providers import registry
from outbound_sender.providers.accounts import AllProviderSettings, load_provider_settings
from outbound_sender.providers.base import Provider
from outbound_sender.providers.null import NullProvider
from outbound_sender.providers.sandbox import SandboxProvider
from outbound_sender.providers.settings import secret
from outbound_sender.providers.transport import provider_client
from outbound_sender.providers.whatsapp import WhatsAppSettings
from outbound_sender.sandboxes.base import SandboxApp
from outbound_sender.sandboxes.generic import GenericSandbox
from outbound_sender.webhooks.store import ReceiptCheck
from outbound_sender.worker.circuit import BreakerConfig
from outbound_sender.worker.dispatch import Dispatcher
from outbound_sender.worker.retry import RetryPolicy
from outbound_sender.worker.service import OutboundJobWorker


def http_client(settings: AllSettings) -> httpx.AsyncClient:
    """Pooled keep-alive client sized to the worker's concurrency, with explicit timeouts."""
    p = settings.provider
    return provider_client(
        settings.worker.max_in_flight,
        connect_timeout=p.connect_timeout_seconds,
        read_timeout=p.read_timeout_seconds,
    )


NO_PROVIDER_KIND = (
    "OUTBOUND_PROVIDER_KIND is not set. Choose the provider mode explicitly: live (the real APIs; "
    "every delivery webhook is verified with its provider's secret), sandbox (the local sandboxes and "
    "their public test secrets), generic (the generic sandbox) or null (benchmarks). "
    "Only `outbound run` defaults to sandbox."
)


def provider_kind(settings: AllSettings) -> ProviderKind:
    """OUTBOUND_PROVIDER_KIND, which has no default outside `outbound run` (ConfigError when unset)."""
    if settings.provider.kind is None:
        raise ConfigError(NO_PROVIDER_KIND)
    return settings.provider.kind


def build_providers(settings: AllSettings, providers: AllProviderSettings | None = None) -> list[Provider]:
    """The providers the worker sends through, from OUTBOUND_PROVIDER_KIND:

    sandbox (`make run`)           the registry's provider clients pointed at their local
                                   sandboxes, with the sandbox accounts' credentials (any setting
                                   given explicitly in the environment still wins)
    live                           the same clients on the settings as given (real APIs by default)
    generic                        the generic sandbox provider at OUTBOUND_PROVIDER_SANDBOX_URL
    null                           accept everything in-process (benchmarks)
    Which of them are used: OUTBOUND_PROVIDERS_ENABLED and each provider's *_ENABLED.
    """
    kind = provider_kind(settings)
    if kind == "null":
        return [NullProvider()]
    if kind == "generic":
        return [SandboxProvider(http_client(settings), settings.provider.sandbox_url)]
    config = providers or load_provider_settings()
    if kind == "sandbox":
        config = with_sandbox_defaults(config)
    options = registry.ClientOptions(config.providers.ambiguous_retry_seconds, webhook_base(settings, config))
    try:
        return [_client(settings, config, name, options) for name in config.enabled if _wanted(config, name)]
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _wanted(config: AllProviderSettings, name: str) -> bool:
    return name == registry.GENERIC or name in config.in_use()


def _client(settings: AllSettings, config: AllProviderSettings, name: str, options: registry.ClientOptions) -> Provider:
    entry = registry.entry(name)
    if entry.client is None:  # the generic sandbox: no account, its URL is OUTBOUND_PROVIDER_SANDBOX_URL
        return SandboxProvider(http_client(settings), settings.provider.sandbox_url)
    return entry.client(http_client(settings), config.accounts[name], options)


def provider_priorities(config: AllProviderSettings) -> dict[str, int]:
    """Failover order inside a channel (lower first); the generic sandbox is the last resort."""
    return {name: account.priority for name, account in config.accounts.items()} | {registry.GENERIC: 1000}


def _explicit(model: BaseSettings) -> dict[str, object]:
    return {name: getattr(model, name) for name in model.model_fields_set}


def with_sandbox_defaults(config: AllProviderSettings) -> AllProviderSettings:
    """Point every provider at its local sandbox unless the environment says otherwise."""
    for provider in registry.sandboxed():
        if provider.sandbox is not None and provider.name in config.accounts:
            explicit = _explicit(config.accounts[provider.name])
            url = str(explicit.pop("base_url", None) or config.sandbox.url(provider.name))  # *_BASE_URL wins
            config.accounts[provider.name] = provider.sandbox.account(url, **explicit)
    if config.providers.enabled is None:  # every sandbox is there: the opt-in backups too
        config.enabled = [p.name for p in registry.accounts()]
    return config


def check_webhook_secrets(config: AllProviderSettings) -> None:
    """Live mode: every provider in use needs the secret its delivery webhook is verified with."""
    missing = [
        entry.variable(field)
        for entry in map(registry.entry, config.in_use())
        for field in (entry.webhook.secrets if entry.webhook else ())
        if not secret(getattr(config.accounts[entry.name], field))
    ]
    if missing:
        raise ConfigError(
            "OUTBOUND_PROVIDER_KIND=live verifies every delivery webhook with its provider's secret; missing: "
            + ", ".join(missing)
            + " (or their *_FILE). Set them, or leave the provider out of OUTBOUND_PROVIDERS_ENABLED."
        )


def webhook_provider_settings(settings: AllSettings) -> AllProviderSettings | None:
    """What the delivery webhooks are verified with: the sandboxes' test secrets in sandbox mode, the
    configured ones in live mode (ConfigError when one is missing); None in modes without webhooks."""
    kind = settings.provider.kind
    if kind not in ("sandbox", "live"):
        return None
    config = load_provider_settings()
    if kind == "sandbox":
        return with_sandbox_defaults(config)
    check_webhook_secrets(config)
    return config


def webhook_base(settings: AllSettings, config: AllProviderSettings) -> str | None:
    """Public URL of the webhook router; in sandbox mode, the local HTTP API by default."""
    if config.webhook.public_url:
        return config.webhook.public_url
    if settings.provider.kind == "sandbox":
        return f"http://127.0.0.1:{settings.base.outbound_http_port}{config.webhook.path_prefix}"
    return None


def build_dispatcher(settings: AllSettings, metrics: Metrics | None = None) -> Dispatcher:
    config = load_provider_settings()
    failover = config.failover
    breaker = BreakerConfig(failover.failure_threshold, failover.open_seconds, failover.half_open_probes)
    providers = build_providers(settings, config)
    _name_the_provider(settings, providers)
    if metrics is not None:
        metrics.init_webhooks(p.name for p in registry.with_webhooks())
        for provider in providers:  # series exist at zero from the start
            metrics.init_provider(provider.name, provider.channels)
        for channel in Channel:
            metrics.init_failover(channel, [p.name for p in providers if channel in p.channels])
    return Dispatcher(
        providers,
        priorities=provider_priorities(config),
        breaker=breaker,
        metrics=metrics,
        receipts=ReceiptCheck(),
    )


def _name_the_provider(settings: AllSettings, providers: list[Provider]) -> None:
    """A ChannelProvider's worker runs one provider, named after the resource (OUTBOUND_PROVIDER_NAME)."""
    name = settings.provider.name
    if name is None:
        return
    if len(providers) != 1:
        names = ", ".join(p.name for p in providers)
        raise ConfigError(f"OUTBOUND_PROVIDER_NAME={name!r} needs exactly one enabled provider, got: {names}")
    providers[0].name = name  # type: ignore[misc]


def check_provider_factory(name: str, config: AllProviderSettings, client: httpx.AsyncClient) -> Provider:
    """The worker's client for `name`, on the check command's own httpx client (UnknownProvider, a
    ValueError naming the known ones, for a name the registry does not list or without a client)."""
    entry = registry.entry(name)
    if entry.client is None:
        raise registry.UnknownProvider(f"provider {name!r} has no client to check; checkable: {registry.checkable()}")
    return entry.client(client, config.accounts[name], registry.ClientOptions(ambiguous_retry=0))


def provider_sandbox_servers(settings: AllSettings, config: AllProviderSettings) -> dict[str, uvicorn.Server]:
    """Every provider sandbox the registry lists, their webhooks pointed at our webhook router."""
    apps = registry.sandbox_apps(webhook_base(settings, config))
    host = config.sandbox.host
    return {name: sandbox_server(host, config.sandbox.port(name), app) for name, app in apps.items()}


def check_consistency(settings: AllSettings) -> None:
    """Cross-group rules that a single field cannot express; provider settings are loaded too."""
    if settings.provider.kind in ("sandbox", "live"):
        load_provider_settings()
    p = settings.provider
    if settings.worker.lease_seconds <= p.connect_timeout_seconds + p.read_timeout_seconds:
        raise ConfigError(
            "OUTBOUND_WORKER_LEASE_SECONDS must exceed the provider connect + read timeouts "
            f"({p.connect_timeout_seconds + p.read_timeout_seconds:g} s), or live sends lose their lease"
        )


def build_worker(dsn: str, settings: AllSettings, metrics: Metrics | None = None) -> OutboundJobWorker:
    check_consistency(settings)
    retry = RetryPolicy(
        base_seconds=settings.retry.base_ms / 1000,
        max_seconds=settings.retry.max_ms / 1000,
        max_hint_seconds=settings.retry.max_hint_seconds,
    )
    metrics = metrics or Metrics()
    return OutboundJobWorker(
        dsn,
        build_dispatcher(settings, metrics),
        settings=settings.worker,
        switches=settings.switches,
        retry=retry,
        metrics=metrics,
        redis_url=settings.base.redis_url,
        whatsapp_number=whatsapp_number(settings),
    )


def whatsapp_number(settings: AllSettings) -> str:
    """Throughput is limited per business phone number: its id, else the provider's name."""
    if settings.provider.kind in ("sandbox", "live"):
        number = load_provider_settings().account(WhatsAppSettings).phone_number_id
        if number:
            return number
    return settings.provider.name or "default"


def sandbox_server(host: str, port: int, app: SandboxApp | None = None) -> uvicorn.Server:
    """A sandbox's server; without `app`, the generic sandbox's."""
    config = uvicorn.Config(
        app or GenericSandbox(),
        host=host,
        port=port,
        log_config=None,  # our logging setup (logs.py) formats and masks uvicorn's lines too
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return uvicorn.Server(config)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop (the production event loop)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def serve_until(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Serve until `stop`, then shut down gracefully."""
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task


async def wait_started(server: uvicorn.Server, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not server.started:
            await asyncio.sleep(0.02)
