"""The provider registry: the one place that lists the providers, one entry each, keyed by name.

An entry holds everything the sender and the operator know about a provider:

    channels    the channels it sends (a ChannelProvider may only pair it with one of them)
    settings    its account settings model (environment prefix, credentials, *_FILE variables)
    client      builds the client the worker sends through
    normalize   its error table: a failed HTTP answer -> a normalized ProviderError
    probe       `outbound check-provider`'s read-only credentials call and how to read its answer
    sandbox     the local fake of its API, the sandbox account's settings and the default port
    webhook     where its delivery receipts arrive, the handlers, and the secrets that verify them
    render      what the operator writes into the worker Deployment of a ChannelProvider naming it

Everything else (the settings loader, the worker's wiring, `check-provider`, the webhook router,
the operator's workload, and the tests that hold the CRD and the database's `kind` constraint to
this list) reads the entries. docs/providers.md, "Adding a provider", walks through a new one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from starlette.requests import Request
from starlette.responses import Response

from outbound_sender.domain import Channel
from outbound_sender.errors import ProviderError
from outbound_sender.providers import http, sendgrid, ses, twilio, vonage, whatsapp
from outbound_sender.providers.base import Provider
from outbound_sender.providers.settings import AccountSettings
from outbound_sender.sandboxes import sendgrid as sendgrid_sandbox
from outbound_sender.sandboxes import ses as ses_sandbox
from outbound_sender.sandboxes import twilio as twilio_sandbox
from outbound_sender.sandboxes import vonage as vonage_sandbox
from outbound_sender.sandboxes import whatsapp as whatsapp_sandbox
from outbound_sender.sandboxes.base import SandboxApp
from outbound_sender.webhooks import sendgrid as sendgrid_webhook
from outbound_sender.webhooks import ses as ses_webhook
from outbound_sender.webhooks import twilio as twilio_webhook
from outbound_sender.webhooks import vonage as vonage_webhook
from outbound_sender.webhooks import whatsapp as whatsapp_webhook
from outbound_sender.webhooks.endpoints import Endpoints


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What the wiring gives every client besides its account settings."""

    ambiguous_retry: float = 0.0  # floor of the retry delay after a send that got no answer
    callback_base: str | None = None  # public URL of our webhook router, for per-message callbacks


ClientFactory = Callable[[httpx.AsyncClient, Any, ClientOptions], Provider]
Handler = Callable[[Endpoints, Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Probe:
    """`outbound check-provider`: the request that proves the credentials, and the verdict on the
    body of a 200 answer (any other status goes through the provider's error table)."""

    request: Callable[[Any], http.Probe]
    verdict: Callable[[dict[str, Any]], http.Verdict]


@dataclass(frozen=True, slots=True)
class Sandbox:
    """The local fake of the provider's API (`outbound run`, `outbound sandbox --providers`)."""

    app: Callable[[], SandboxApp]
    account: Callable[..., AccountSettings]  # (base_url, **explicit settings) -> the sandbox account
    port: int  # default of OUTBOUND_SANDBOX_<NAME>_PORT


@dataclass(frozen=True, slots=True)
class Webhook:
    """The provider's delivery receipts: the path under OUTBOUND_WEBHOOK_PATH_PREFIX, the handler of
    each HTTP method there, and the settings fields live mode refuses to start without."""

    path: str
    handlers: Mapping[str, Handler]
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Render:
    """What the operator renders for a ChannelProvider of this provider (reconcile/workload.py)."""

    mode: Literal["live", "generic"]  # the worker's OUTBOUND_PROVIDER_KIND
    endpoint_variable: str  # where spec.endpoint goes
    # credentialsSecretRef key (the CRD's vocabulary) -> settings field read from the mounted file
    credentials: Mapping[str, str] = field(default_factory=dict)
    # spec.<provider> field -> environment variable of the worker
    sender_settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    name: str
    channels: frozenset[Channel]
    render: Render
    settings: type[AccountSettings] | None = None
    client: ClientFactory | None = None
    normalize: Callable[[httpx.Response], ProviderError] | None = None
    probe: Probe | None = None
    sandbox: Sandbox | None = None
    webhook: Webhook | None = None
    # A backup provider: outside sandbox mode it is used only where OUTBOUND_PROVIDERS_ENABLED names
    # it (the operator always names a worker's provider), so adding one never stops a live process
    # that has no account with it from starting.
    opt_in: bool = False

    @property
    def channel(self) -> Channel:
        """The first channel it sends, in the order of domain.Channel (check-provider's test message)."""
        return next(c for c in Channel if c in self.channels)

    def variable(self, settings_field: str) -> str:
        """The environment variable of one of its settings fields (TWILIO_AUTH_TOKEN_FILE)."""
        if self.settings is None:
            raise ValueError(f"provider {self.name!r} has no account settings")
        return f"{self.settings.model_config.get('env_prefix', '')}{settings_field}".upper()


GENERIC = "sandbox"  # the generic sandbox: every channel, no account, for demos and tests

_ENTRIES = (
    ProviderEntry(
        name="twilio",
        channels=frozenset({Channel.SMS}),
        settings=twilio.TwilioSettings,
        client=lambda c, s, o: twilio.TwilioProvider(
            c, s, callback_base=o.callback_base, ambiguous_retry=o.ambiguous_retry
        ),
        normalize=twilio.normalize,
        probe=Probe(twilio.credentials_probe, twilio.credentials_verdict),
        sandbox=Sandbox(twilio_sandbox.TwilioSandbox, twilio_sandbox.account, 8091),
        webhook=Webhook(twilio.STATUS_CALLBACK_PATH, {"POST": twilio_webhook.status_callback}, ("auth_token",)),
        render=Render(
            "live",
            "TWILIO_BASE_URL",
            {"accountSid": "account_sid", "authToken": "auth_token"},
            {"messagingServiceSid": "TWILIO_MESSAGING_SERVICE_SID", "from": "TWILIO_FROM_NUMBER"},
        ),
    ),
    ProviderEntry(
        name="sendgrid",
        channels=frozenset({Channel.EMAIL}),
        settings=sendgrid.SendGridSettings,
        client=lambda c, s, o: sendgrid.SendGridProvider(c, s, ambiguous_retry=o.ambiguous_retry),
        normalize=sendgrid.normalize,
        probe=Probe(sendgrid.credentials_probe, sendgrid.credentials_verdict),
        sandbox=Sandbox(sendgrid_sandbox.SendGridSandbox, sendgrid_sandbox.account, 8092),
        webhook=Webhook(
            sendgrid_webhook.EVENTS_PATH, {"POST": sendgrid_webhook.event_webhook}, ("webhook_public_key",)
        ),
        render=Render(
            "live",
            "SENDGRID_BASE_URL",
            {"apiKey": "api_key"},
            {"fromEmail": "SENDGRID_FROM_EMAIL", "fromName": "SENDGRID_FROM_NAME"},
        ),
    ),
    ProviderEntry(
        name="whatsapp",
        channels=frozenset({Channel.WHATSAPP}),
        settings=whatsapp.WhatsAppSettings,
        client=lambda c, s, o: whatsapp.WhatsAppProvider(c, s, ambiguous_retry=o.ambiguous_retry),
        normalize=whatsapp.normalize,
        probe=Probe(whatsapp.credentials_probe, whatsapp.credentials_verdict),
        sandbox=Sandbox(whatsapp_sandbox.WhatsAppSandbox, whatsapp_sandbox.account, 8093),
        webhook=Webhook(
            whatsapp_webhook.WEBHOOK_PATH,
            {"GET": whatsapp_webhook.verification, "POST": whatsapp_webhook.statuses},
            ("app_secret", "verify_token"),
        ),
        render=Render(
            "live",
            "WHATSAPP_BASE_URL",
            {"accessToken": "access_token", "appSecret": "app_secret"},
            {"phoneNumberId": "WHATSAPP_PHONE_NUMBER_ID", "apiVersion": "WHATSAPP_API_VERSION"},
        ),
    ),
    ProviderEntry(
        name="vonage",
        channels=frozenset({Channel.SMS}),
        settings=vonage.VonageSettings,
        client=lambda c, s, o: vonage.VonageProvider(
            c, s, callback_base=o.callback_base, ambiguous_retry=o.ambiguous_retry
        ),
        normalize=vonage.normalize,
        probe=Probe(vonage.credentials_probe, vonage.credentials_verdict),
        sandbox=Sandbox(vonage_sandbox.VonageSandbox, vonage_sandbox.account, 8094),
        webhook=Webhook(
            vonage.DLR_PATH, {"GET": vonage_webhook.receipt, "POST": vonage_webhook.receipt}, ("signature_secret",)
        ),
        opt_in=True,
        render=Render(
            "live",
            "VONAGE_BASE_URL",
            {"apiKey": "api_key", "apiSecret": "api_secret", "signatureSecret": "signature_secret"},
            {"from": "VONAGE_FROM_NUMBER", "signatureMethod": "VONAGE_SIGNATURE_METHOD"},
        ),
    ),
    ProviderEntry(
        name="ses",
        channels=frozenset({Channel.EMAIL}),
        settings=ses.SesSettings,
        client=lambda c, s, o: ses.SesProvider(c, s, ambiguous_retry=o.ambiguous_retry),
        normalize=ses.normalize,
        probe=Probe(ses.credentials_probe, ses.credentials_verdict),
        sandbox=Sandbox(ses_sandbox.SesSandbox, ses_sandbox.account, 8095),
        # No shared secret: SNS signs with its certificate; the accepted topics are configuration.
        webhook=Webhook(ses.SNS_PATH, {"POST": ses_webhook.notification}, ()),
        opt_in=True,
        render=Render(
            "live",
            "SES_BASE_URL",
            {
                "accessKeyId": "access_key_id",
                "secretAccessKey": "secret_access_key",
                "sessionToken": "session_token",
            },
            {
                "region": "SES_REGION",
                "fromEmail": "SES_FROM_EMAIL",
                "fromName": "SES_FROM_NAME",
                "configurationSetName": "SES_CONFIGURATION_SET_NAME",
            },
        ),
    ),
    ProviderEntry(
        name=GENERIC,
        channels=frozenset(Channel),
        render=Render("generic", "OUTBOUND_PROVIDER_SANDBOX_URL"),
    ),
)
REGISTRY: Mapping[str, ProviderEntry] = {entry.name: entry for entry in _ENTRIES}


class UnknownProvider(ValueError):
    """A provider name the registry does not list."""


def entry(name: str) -> ProviderEntry:
    """The entry of `name`; UnknownProvider names the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownProvider(f"unknown provider {name!r}; known providers: {', '.join(REGISTRY)}") from None


def names() -> tuple[str, ...]:
    """Every provider name, the generic sandbox included (the CRD enum, the `kind` constraint)."""
    return tuple(REGISTRY)


def accounts() -> tuple[ProviderEntry, ...]:
    """The providers with an account of their own (all but the generic sandbox)."""
    return tuple(e for e in REGISTRY.values() if e.settings is not None)


def checkable() -> tuple[str, ...]:
    """The providers `outbound check-provider` can check."""
    return tuple(e.name for e in REGISTRY.values() if e.probe is not None)


def sandboxed() -> tuple[ProviderEntry, ...]:
    return tuple(e for e in REGISTRY.values() if e.sandbox is not None)


def with_webhooks() -> tuple[ProviderEntry, ...]:
    return tuple(e for e in REGISTRY.values() if e.webhook is not None)


def sandbox_apps(webhook_base: str | None) -> dict[str, SandboxApp]:
    """A fresh sandbox per provider that has one, its delivery webhooks sent to our endpoint under
    `webhook_base` (the router's public URL; None: the sandbox sends none)."""
    apps: dict[str, SandboxApp] = {}
    for provider in sandboxed():
        assert provider.sandbox is not None
        app = provider.sandbox.app()
        if provider.webhook is not None:
            app.send_webhooks_to(f"{webhook_base.rstrip('/')}{provider.webhook.path}" if webhook_base else None)
        apps[provider.name] = app
    return apps
