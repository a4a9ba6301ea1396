"""`outbound check-provider`: the runbook's curl health checks as one command.

Step 1 (always) checks credentials and reachability with the read-only call the provider's entry
in providers/registry.py names (its `credentials_probe`: the account must be active, the key must
hold the scope to send, the sender number must be readable; docs/providers.md lists them).
Step 2 (with --send-to) sends one real message through the same client the worker uses.
Each step prints one line: the request's outcome and the normalized result. Exit status 0 when
every step passed, 1 otherwise. Works against any base URL: the real API, a sandbox or a mock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from outbound_sender.domain import OutboundMessage
from outbound_sender.errors import ProviderError
from outbound_sender.logs import mask
from outbound_sender.providers import http, registry
from outbound_sender.providers.accounts import AllProviderSettings
from outbound_sender.providers.base import Provider
from outbound_sender.providers.transport import provider_client


@dataclass(frozen=True)
class CheckResult:
    provider: str
    step: str
    url: str
    ok: bool
    http_status: int | None
    normalized: str
    detail: str
    duration_ms: int

    def line(self) -> str:
        verdict = "OK" if self.ok else "FAIL"
        status = self.http_status if self.http_status is not None else "-"
        detail = mask(self.detail).replace('"', "'")
        return (
            f"{verdict:<4} provider={self.provider} step={self.step} http={status} "
            f'result={self.normalized} duration_ms={self.duration_ms} url={self.url} detail="{detail}"'
        )


@dataclass(frozen=True)
class _Check:
    """A provider's read-only credentials call and how its answer is read."""

    request: http.Probe
    probe: registry.Probe
    normalize: Callable[[httpx.Response], ProviderError]

    def verdict(self, response: httpx.Response) -> http.Verdict:
        """The error table for a failure, the provider's own verdict on a 200 answer."""
        if response.status_code != 200:
            error = self.normalize(response)
            return http.Verdict(False, error.code.value, f"{error.provider_code or '-'}: {error.message}")
        return self.probe.verdict(http.json_body(response) or {})


def _probe(name: str, config: AllProviderSettings) -> _Check:
    """UnknownProvider for a name the registry does not list, or one without a credentials call."""
    entry = registry.entry(name)
    if entry.probe is None or entry.normalize is None:
        raise registry.UnknownProvider(f"provider {name!r} cannot be checked; checkable: {registry.checkable()}")
    return _Check(entry.probe.request(config.accounts[name]), entry.probe, entry.normalize)


async def check_credentials(name: str, config: AllProviderSettings, client: httpx.AsyncClient) -> CheckResult:
    check = _probe(name, config)
    url = check.request.url
    started = time.monotonic()
    request = client.build_request("GET", url, headers=check.request.headers, params=check.request.params)
    try:
        response = await http.send(client, request, label=name, ambiguous_retry=0, auth=check.request.auth)
    except ProviderError as error:
        return CheckResult(name, "credentials", url, False, None, error.code.value, error.message, _ms(started))
    v = check.verdict(response)
    return CheckResult(name, "credentials", url, v.ok, response.status_code, v.normalized, v.detail, _ms(started))


@dataclass(frozen=True)
class TestMessage:
    to: str
    body: str = "Test message from outbound check-provider"
    subject: str | None = "Test message"
    template: str | None = None
    language: str | None = None


async def send_test(provider: Provider, name: str, message: TestMessage) -> CheckResult:
    outbound = OutboundMessage(
        id=0,
        org_id="check",
        channel=registry.entry(name).channel,
        to_recipient=message.to,
        lease_id="",
        attempt_no=1,
        attempt_count=1,
        max_attempts=1,
        body=message.body,
        subject=message.subject,
        template_code=message.template,
        template_language=message.language,
    )
    started = time.monotonic()
    try:
        result = await provider.send(outbound)
    except ProviderError as error:
        detail = f"{error.provider_code or '-'}: {error.message}"
        if error.retry_after:
            detail += f" (retry after {error.retry_after:g} s)"
        return CheckResult(name, "send", "", False, error.http_status, error.code.value, detail, _ms(started))
    detail = f"provider message id {result.provider_message_id} status {result.raw_status}"
    return CheckResult(name, "send", "", True, result.http_status, "SENT", detail, _ms(started))


ProviderFactory = Callable[[str, AllProviderSettings, httpx.AsyncClient], Provider]
Printer = Callable[[str], None]


async def run_check(
    name: str,
    config: AllProviderSettings,
    make_provider: ProviderFactory,
    message: TestMessage | None = None,
    *,
    out: Printer = print,
    timeout: float = 15.0,
) -> int:
    """Run the steps, print a line each; 0 when all passed."""
    client = provider_client(2, connect_timeout=min(5.0, timeout), read_timeout=timeout)
    steps: list[Callable[[], Awaitable[CheckResult]]] = [lambda: check_credentials(name, config, client)]
    if message is not None:
        provider = make_provider(name, config, client)
        steps.append(lambda: send_test(provider, name, message))
    ok = True
    try:
        for step in steps:
            result = await step()
            out(result.line())
            ok = ok and result.ok
    finally:
        await client.aclose()
    return 0 if ok else 1


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
