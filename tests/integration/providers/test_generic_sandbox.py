"""The generic sandbox (sandboxes/generic.py) and its client (providers/sandbox.py) over real HTTP:
one more sandbox of the shared framework, so its rules, counts and `/_sandbox` routes are the
provider sandboxes' own, and the generic sandbox's old rule syntax is refused with its replacement."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from outbound_sender.domain import Channel, ErrorCode, OutboundMessage
from outbound_sender.errors import AmbiguousSendError, PermanentError, ProviderError, RateLimitedError, TemporaryError
from outbound_sender.providers.sandbox import SandboxProvider
from outbound_sender.sandboxes.base import Rule
from outbound_sender.sandboxes.generic import GenericSandbox
from outbound_sender.sandboxes.twilio import TwilioSandbox
from tests.integration.providers.conftest import http_client, serve

E = ErrorCode


def message(to: str, channel: Channel = Channel.SMS) -> OutboundMessage:
    return OutboundMessage(1, "org", channel, to, "lease", 1, 1, 5, body="hello")


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[GenericSandbox, str]]:
    app = GenericSandbox()
    app.config.latency_ms = 0
    app.config.timeout_hold_seconds = 0.05
    async with serve(app) as url:
        yield app, url


async def send(url: str, to: str, channel: Channel = Channel.SMS, read_timeout: float = 5.0) -> ProviderError | str:
    provider = SandboxProvider(http_client(read_timeout), url)
    try:
        return str((await provider.send(message(to, channel))).provider_message_id)
    except ProviderError as error:
        return error
    finally:
        await provider.aclose()


# recipient -> (error type, normalized code, HTTP status, Retry-After): the documented default rules.
DEFAULTS: dict[str, tuple[type[ProviderError], ErrorCode, int, float | None]] = {
    "+14155550001": (PermanentError, E.INVALID_PHONE_NUMBER, 400, None),
    "+15550000002": (TemporaryError, E.TEMPORARY_ERROR, 503, None),
    "+14155550003": (RateLimitedError, E.RATE_LIMIT_EXCEEDED, 429, 2.0),
    "+15550000004": (TemporaryError, E.TEMPORARY_ERROR, 504, None),
    "bounce@example.com": (PermanentError, E.INVALID_EMAIL, 400, None),
}


async def test_default_rules_answer_each_normalized_error(sandbox: tuple[GenericSandbox, str]) -> None:
    app, url = sandbox
    for to, (kind, code, status, retry_after) in DEFAULTS.items():
        channel = Channel.EMAIL if "@" in to else Channel.SMS
        error = await send(url, to, channel)
        assert isinstance(error, kind), (to, error)
        assert (error.code, error.http_status, error.retry_after) == (code, status, retry_after), to
    assert app.failed == dict.fromkeys(DEFAULTS, 1)
    assert app.accepted == {}


async def test_accepted_sends_are_counted_by_recipient_in_the_shared_stats(
    sandbox: tuple[GenericSandbox, str],
) -> None:
    _, url = sandbox
    ids = [await send(url, "+14155552671") for _ in range(2)] + [await send(url, "+14155550001")]
    assert ids[:2] == ["sbx_000000000001", "sbx_000000000002"]
    async with httpx.AsyncClient() as client:
        stats = (await client.get(url + "/_sandbox/stats")).json()
        assert stats == {
            "requests": {"accepted": 2, "error:INVALID_PHONE_NUMBER": 1},
            "webhooks": {},
            "recipients": {"accepted": {"+14155552671": 2}, "failed": {"+14155550001": 1}},
        }
        assert (await client.post(url + "/_sandbox/reset")).status_code == 200
        stats = (await client.get(url + "/_sandbox/stats")).json()
    assert stats == {"requests": {}, "webhooks": {}, "recipients": {"accepted": {}, "failed": {}}}


@pytest.mark.parametrize(
    ("old", "replacement"),
    [
        ("permanent:INVALID_EMAIL", "error:<CODE>"),
        ("temporary", "http:503"),
        ("ratelimit:2", "error:RATE_LIMIT_EXCEEDED"),
        ("http500", "http:500"),
    ],
)
async def test_the_old_rule_syntax_is_refused_with_its_replacement(
    sandbox: tuple[GenericSandbox, str], old: str, replacement: str
) -> None:
    _, url = sandbox
    async with httpx.AsyncClient() as client:
        config = (await client.get(url + "/_sandbox/config")).json()
        answer = await client.put(url + "/_sandbox/config", json={**config, "rules": [{"pattern": ".", "action": old}]})
        assert answer.status_code == 422
        assert "old syntax" in answer.json()["error"]
        assert replacement in answer.json()["error"]
        assert (await client.get(url + "/_sandbox/config")).json() == config  # unchanged
    with pytest.raises(ValueError, match="old syntax"):  # every sandbox shares the rule model
        TwilioSandbox.config_model.model_validate({"rules": [{"pattern": ".", "action": old}]})


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"rules": [{"pattern": ".", "action": "error:NO_SUCH_CODE"}]}, "normalized codes"),
        ({"rules": [{"pattern": ".", "action": "error:LEASE_EXPIRED"}]}, "normalized codes"),
        ({"rules": [{"pattern": ".", "action": "async:bounce"}]}, "no delivery webhooks"),
        ({"rules": [{"pattern": ".", "action": "http:404"}]}, "http:500 … http:599"),
        ({"rules": [{"pattern": ".", "action": "timeout:5"}]}, "takes no argument"),
        ({"rules": [{"pattern": "(", "action": "timeout"}]}, "not a regular expression"),
        ({"webhooks": True}, "Extra inputs are not permitted"),  # it has no webhook settings at all
        ({"webhook_delay_ms": 5}, "Extra inputs are not permitted"),
        ({"latency": 5}, "Extra inputs are not permitted"),  # a misspelt setting
    ],
)
async def test_a_config_the_generic_sandbox_cannot_honour_is_refused(
    sandbox: tuple[GenericSandbox, str], change: dict[str, object], complaint: str
) -> None:
    _, url = sandbox
    async with httpx.AsyncClient() as client:
        config = (await client.get(url + "/_sandbox/config")).json()
        answer = await client.put(url + "/_sandbox/config", json={**config, **change})
    assert answer.status_code == 422
    assert complaint in answer.json()["error"]


async def test_runtime_config_changes_latency_rules_and_retry_after(sandbox: tuple[GenericSandbox, str]) -> None:
    _, url = sandbox
    rules = [{"pattern": "^\\+1999", "action": "error:RATE_LIMIT_EXCEEDED"}]
    async with httpx.AsyncClient() as client:
        config = (await client.get(url + "/_sandbox/config")).json()
        changed = {**config, "latency_ms": 300, "retry_after_seconds": 7, "rules": rules}
        (await client.put(url + "/_sandbox/config", json=changed)).raise_for_status()
    started = time.monotonic()
    limited = await send(url, "+19995550100")
    assert time.monotonic() - started >= 0.3
    assert isinstance(limited, RateLimitedError)
    assert limited.retry_after == 7.0
    assert isinstance(await send(url, "+14155550001"), str)  # the default rules were replaced


async def test_failure_rate_fails_the_share_no_rule_matched(sandbox: tuple[GenericSandbox, str]) -> None:
    app, url = sandbox
    app.config.failure_rate = 1.0
    failed = await send(url, "+14155552671")
    assert isinstance(failed, TemporaryError)
    assert failed.http_status == 503
    assert isinstance(await send(url, "+14155550001"), PermanentError)  # rules still come first
    app.config.failure_rate = 0.5
    outcomes = [await send(url, f"+1415555{n:04d}") for n in range(100, 300)]
    failures = sum(isinstance(o, TemporaryError) for o in outcomes)
    assert 50 <= failures <= 150, failures  # binomial(200, 0.5): far outside 6 standard deviations


async def test_throughput_limit_answers_429_with_retry_after(sandbox: tuple[GenericSandbox, str]) -> None:
    app, url = sandbox
    app.config.rate_per_second = 0.5
    assert isinstance(await send(url, "+14155552671"), str)
    limited = await send(url, "+14155552671")
    assert isinstance(limited, RateLimitedError)
    assert limited.retry_after == 2.0
    assert app.stats["rate_limited"] == 1


async def test_slow_is_accepted_but_answered_too_late_an_ambiguous_send(sandbox: tuple[GenericSandbox, str]) -> None:
    app, url = sandbox
    app.config.rules = [Rule(pattern=".", action="slow")]
    app.config.timeout_hold_seconds = 2.0
    ambiguous = await send(url, "+14155552671", read_timeout=0.3)
    assert isinstance(ambiguous, AmbiguousSendError)
    assert app.accepted == {"+14155552671": 1}  # the sandbox did take it: hence "ambiguous"
    app.config.rules = [Rule(pattern=".", action="timeout")]
    timed_out = await send(url, "+14155552672", read_timeout=0.3)
    assert isinstance(timed_out, AmbiguousSendError)
    async with asyncio.timeout(10):  # the held request ends; it was never accepted
        while app.failed.get("+14155552672") != 1:
            await asyncio.sleep(0.05)
    assert "+14155552672" not in app.accepted
