"""`outbound check-provider`: the runbook's curl health checks as one command.

Step 1 (always) checks credentials and reachability with a read-only call:
    twilio    GET /2010-04-01/Accounts/{sid}.json       account must be `active`
    sendgrid  GET /v3/scopes                            key must hold `mail.send`
    whatsapp  GET /{version}/{phone-number-id}          the number must be readable
Step 2 (with --send-to) sends one real message through the same client the worker uses.
Each step prints one line: the request's outcome and the normalized result. Exit status 0 when
every step passed, 1 otherwise. Works against any base URL: the real API, a sandbox or a mock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import ProviderError
from outbound_sender.logs import mask
from outbound_sender.providers import http, sendgrid, twilio, whatsapp
from outbound_sender.providers.base import Provider
from outbound_sender.providers.settings import AllProviderSettings, secret
from outbound_sender.providers.transport import provider_client

CHANNELS = {"twilio": Channel.SMS, "sendgrid": Channel.EMAIL, "whatsapp": Channel.WHATSAPP}


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


def _probe(name: str, config: AllProviderSettings) -> tuple[str, dict[str, str], httpx.Auth | None]:
    """URL, headers and auth of the read-only credentials call."""
    if name == "twilio":
        t = config.twilio
        url = f"{t.base_url.rstrip('/')}/2010-04-01/Accounts/{t.account_sid}.json"
        return url, {}, httpx.BasicAuth(t.account_sid or "", secret(t.auth_token))
    if name == "sendgrid":
        url = config.sendgrid.base_url.rstrip("/") + "/v3/scopes"
        return url, {"Authorization": f"Bearer {secret(config.sendgrid.api_key)}"}, None
    w = config.whatsapp
    url = f"{w.base_url.rstrip('/')}/{w.api_version}/{w.phone_number_id}"
    return url, {"Authorization": f"Bearer {secret(w.access_token)}"}, None


def _verdict(name: str, response: httpx.Response) -> tuple[bool, str, str]:
    """(ok, normalized, detail) of the credentials call's answer."""
    normalize = {"twilio": twilio.normalize, "sendgrid": sendgrid.normalize, "whatsapp": whatsapp.normalize}
    if response.status_code != 200:
        error = normalize[name](response)
        return False, error.code.value, f"{error.provider_code or '-'}: {error.message}"
    body = http.json_body(response) or {}
    if name == "twilio" and body.get("status") != "active":
        return False, ErrorCode.ACCOUNT_SUSPENDED.value, f"account status {body.get('status')!r}"
    if name == "sendgrid" and "mail.send" not in (body.get("scopes") or []):
        return False, ErrorCode.AUTH_FAILED.value, "the API key lacks the mail.send scope"
    detail = {
        "twilio": f"account {body.get('friendly_name', '')!r} is active",
        "sendgrid": "API key holds mail.send",
        "whatsapp": f"number {body.get('display_phone_number')} quality {body.get('quality_rating')}",
    }[name]
    return True, "OK", detail


async def check_credentials(name: str, config: AllProviderSettings, client: httpx.AsyncClient) -> CheckResult:
    url, headers, auth = _probe(name, config)
    started = time.monotonic()
    request = client.build_request("GET", url, headers=headers)
    try:
        response = await http.send(client, request, label=name, ambiguous_retry=0, auth=auth)
    except ProviderError as error:
        return CheckResult(name, "credentials", url, False, None, error.code.value, error.message, _ms(started))
    ok, normalized, detail = _verdict(name, response)
    return CheckResult(name, "credentials", url, ok, response.status_code, normalized, detail, _ms(started))


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
        channel=CHANNELS[name],
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
