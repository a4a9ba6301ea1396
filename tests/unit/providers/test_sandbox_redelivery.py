"""The sandboxes redeliver a delivery webhook our endpoint did not take, as their providers do: most
retry a failed connection and a 5xx or 429 answer with growing waits; Twilio retries only a failed
connection, once. Without it, a receipt posted while the API was briefly unreachable was lost."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from outbound_sender.sandboxes.base import Redelivery, WebhookSender
from outbound_sender.sandboxes.twilio import TwilioSandbox
from outbound_sender.sandboxes.whatsapp import WhatsAppSandbox


def endpoint(answers: list[int | None]) -> tuple[httpx.MockTransport, list[int | None]]:
    """Answers in turn (None: the connection fails); the last one repeats."""
    seen: list[int | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers[min(len(seen), len(answers) - 1)]
        seen.append(answer)
        if answer is None:
            raise httpx.ConnectTimeout("no answer", request=request)
        return httpx.Response(answer)

    return httpx.MockTransport(handle), seen


async def deliver(redelivery: Redelivery, answers: list[int | None]) -> tuple[WebhookSender, list[int | None]]:
    transport, seen = endpoint(answers)
    sender = WebhookSender(redelivery=redelivery)
    sender._client = httpx.AsyncClient(transport=transport)
    sender.schedule(0.0, [("https://api.example/webhooks/x", b"{}", {})])
    await sender.drain(timeout=10)
    await sender.aclose()
    return sender, seen


def fast(policy: Redelivery) -> Redelivery:
    return dataclasses.replace(policy, first_delay=0.01, max_delay=0.02)


@pytest.mark.parametrize(
    ("answers", "sent", "attempts"),
    [
        ([None, None, 200], {"redelivered": 2, "200": 1}, 3),  # the API was unreachable for a while
        ([503, 429, 200], {"redelivered": 2, "200": 1}, 3),
        ([401], {"401": 1}, 1),  # a refusal is an answer: not sent again
        ([None], {"redelivered": 7, "error": 1}, 8),  # the provider gives up in the end
    ],
)
async def test_a_provider_that_retries_redelivers_until_taken_or_given_up(
    answers: list[int | None], sent: dict[str, int], attempts: int
) -> None:
    sender, seen = await deliver(fast(WhatsAppSandbox.redelivery), answers)

    assert dict(sender.sent) == sent
    assert len(seen) == attempts


@pytest.mark.parametrize(
    ("answers", "sent", "attempts"),
    [
        ([None, 200], {"redelivered": 1, "200": 1}, 2),
        ([None, None, 200], {"redelivered": 1, "error": 1}, 2),  # one retry only
        ([503, 200], {"503": 1}, 1),  # an answer is final
    ],
)
async def test_twilio_retries_a_failed_connection_once(
    answers: list[int | None], sent: dict[str, int], attempts: int
) -> None:
    sender, seen = await deliver(fast(TwilioSandbox.redelivery), answers)

    assert dict(sender.sent) == sent
    assert len(seen) == attempts


def test_no_connection_a_5xx_and_a_429_are_retried_other_answers_are_final() -> None:
    retried = [answer for answer in (None, 200, 202, 400, 401, 404, 429, 500, 503) if Redelivery().retries(answer)]
    assert retried == [None, 429, 500, 503]
