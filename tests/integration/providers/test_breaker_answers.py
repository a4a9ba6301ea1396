"""Answers about one recipient keep the circuit closed, on every provider, over real HTTP: a run of
invalid numbers, unsubscribes, bounces or WhatsApp per-user limits (131049, retried 24 h later)
says the provider is up, so a message to a healthy recipient is still sent at once."""

from __future__ import annotations

import pytest

from outbound_sender.domain import CircuitState
from outbound_sender.errors import ProviderError
from outbound_sender.sandboxes.base import Rule
from outbound_sender.worker.circuit import BreakerConfig
from outbound_sender.worker.dispatch import Dispatcher
from tests.integration.providers.conftest import CASES, Case, serve
from tests.integration.providers.test_conformance import outbound

THRESHOLD = 3
BAD = {
    "twilio": "+15557650001",
    "sendgrid": "bounce@example.com",
    "whatsapp": "+15557650001",
    "vonage": "+15557650001",
    "ses": "bounce@example.com",
}
ANSWERS = {
    "twilio": ["error:21211", "error:21614", "error:21610"],
    "sendgrid": ["error:invalid_email"],
    "whatsapp": ["error:131049", "error:131026", "error:131047", "error:131050", "error:131009"],
    "vonage": ["error:6", "error:7", "error:33"],
    "ses": ["error:MessageRejected", "error:BadRequestException"],
}
CASE_ANSWERS = [(case, answer) for case in CASES for answer in ANSWERS[case.name]]


@pytest.mark.parametrize(("case", "answer"), CASE_ANSWERS, ids=[f"{c.name}-{a}" for c, a in CASE_ANSWERS])
async def test_recipient_answers_do_not_open_the_circuit(case: Case, answer: str) -> None:
    app = case.sandbox()
    bad = BAD[case.name]
    app.config.rules = [Rule(pattern=f"^{bad.replace('+', '[+]')}$", action=answer)]
    async with serve(app) as url:
        provider = case.provider(url)
        dispatcher = Dispatcher([provider], breaker=BreakerConfig(failure_threshold=THRESHOLD, open_seconds=60))
        try:
            for n in range(2 * THRESHOLD):
                with pytest.raises(ProviderError):
                    await dispatcher.send(outbound(case, message_id=n + 1, to=bad))
            assert dispatcher.states() == {provider.name: CircuitState.CLOSED}
            name, result = await dispatcher.send(outbound(case, message_id=100))
        finally:
            await dispatcher.aclose()
    assert name == provider.name
    assert result.provider_message_id
